/**
 * The control channel: a `session` channel with the subsystem `tether-control`, carrying
 * JSON lines both ways. It is the only session use the gateway allows a connector.
 *
 * Connector → gateway:
 *   hello      first message: who is talking
 *   repo       metadata of one repository, sent before its `tcpip-forward` (and again on change)
 *   withdraw   the connector cannot reach this repository's destination right now
 *   restore    it can again
 *   ping       round-trip probe; answered by pong with the same id
 *   unregister remove the key this session authenticated with from the tenant
 *   managed-ready  the connector listens for proposals now (sent after its forward requests): the gateway sends them (and again
 *              whenever they change); a connector that never says so gets none
 *   managed    what became of a managed repository the gateway proposed: serving, refused (why),
 *              withdrawn (the policy no longer allows it) or shadowed (a local entry has the label)
 *   enroll     only on an enrollment session (user `tether-enroll`): one-time token
 * Gateway → connector:
 *   welcome    tenant, quota, gateway version and node
 *   forward    a forward was granted: label → lease port
 *   refused    a forward was refused, with the reason the user should see
 *   reconnect  this gateway is shutting down (a drain): open a new session now (no backoff),
 *              take the forwards there, then cancel them here; this session keeps serving the
 *              connections it carries until they finish or the gateway's drain_timeout ends
 *   pong, unregistered, enrolled, error
 *   propose    (after managed-ready) the operator proposes a managed repository: label + URI. The connector checks it
 *              against its own `managed` policy and answers with `managed`; the gateway can never
 *              make a connector dial anything its policy does not allow.
 *   unpropose  the operator removed it
 *   proposals-done  every current proposal was sent (after welcome): the connector drops accepted
 *              managed repositories that were not proposed again
 */

import type { ErrorCode } from '../errors/index.js';

export const CONTROL_SUBSYSTEM = 'tether-control';
export const ENROLL_USER = 'tether-enroll';
export const CONTROL_VERSION = 1;
/** Longest JSON line either side accepts. */
export const MAX_CONTROL_LINE = 64 * 1024;

export interface RepoMetaMessage {
  type: 'repo';
  label: string;
  service: string;
  scheme: string | null;
  host: string;
  port: number;
  path: string | null;
}

export type ConnectorMessage =
  | { type: 'hello'; version: number; agent: string; hostname?: string }
  | RepoMetaMessage
  | { type: 'withdraw'; label: string; reason: string }
  | { type: 'restore'; label: string }
  | { type: 'ping'; id: number }
  | { type: 'unregister' }
  | { type: 'enroll'; token: string }
  | { type: 'managed-ready' }
  | ManagedReportMessage;

export type ManagedState = 'serving' | 'refused' | 'withdrawn' | 'shadowed';

export interface ManagedReportMessage {
  type: 'managed';
  label: string;
  state: ManagedState;
  reason: string | null;
  /** The URI the report is about (the connector's copy of the proposal). */
  uri: string;
}

/** Longest URI a proposal may carry. */
export const MAX_PROPOSAL_URI = 2048;

export type GatewayMessage =
  | { type: 'welcome'; tenant: string; quota: number; gateway: string; node?: string }
  | { type: 'forward'; label: string; port: number }
  | { type: 'refused'; label: string; code: ErrorCode; reason: string }
  | { type: 'reconnect'; reason: string }
  | { type: 'pong'; id: number }
  | { type: 'unregistered'; fingerprint: string }
  | { type: 'enrolled'; tenant: string; fingerprint: string }
  | { type: 'error'; code: ErrorCode; message: string }
  | { type: 'propose'; label: string; uri: string }
  | { type: 'unpropose'; label: string }
  | { type: 'proposals-done' };

/**
 * Splits a byte stream into JSON messages; bad lines are reported, never thrown. A line longer
 * than `maxLine` bytes is dropped up to its end (reported once), so what is buffered never
 * exceeds `maxLine` whatever the peer sends.
 */
export class JsonLineDecoder {
  private parts: Buffer[] = [];
  private size = 0;
  /** Inside an over-long line: skipping bytes until its newline. */
  private skipping = false;

  constructor(
    private readonly onMessage: (msg: Record<string, unknown>) => void,
    private readonly onBadLine: (why: string) => void,
    private readonly maxLine = MAX_CONTROL_LINE,
  ) {}

  push(chunk: Buffer | string): void {
    let buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    while (buf.length > 0) {
      const nl = buf.indexOf(10);
      if (nl < 0) {
        if (this.skipping) return;
        if (this.size + buf.length > this.maxLine) {
          this.tooLong();
          return;
        }
        this.parts.push(buf);
        this.size += buf.length;
        return;
      }
      const head = buf.subarray(0, nl);
      buf = buf.subarray(nl + 1);
      if (this.skipping) {
        this.skipping = false;
        continue;
      }
      if (this.size + head.length > this.maxLine) {
        this.reset();
        this.onBadLine(`control line longer than ${this.maxLine} bytes`);
        continue;
      }
      const line = this.parts.length === 0 ? head : Buffer.concat([...this.parts, head]);
      this.reset();
      this.line(line.toString('utf8').trim());
    }
  }

  private tooLong(): void {
    this.reset();
    this.skipping = true;
    this.onBadLine(`control line longer than ${this.maxLine} bytes`);
  }

  private reset(): void {
    this.parts = [];
    this.size = 0;
  }

  private line(line: string): void {
    if (line === '') return;
    let v: unknown;
    try {
      v = JSON.parse(line) as unknown;
    } catch {
      this.onBadLine('control line is not JSON');
      return;
    }
    if (
      v !== null &&
      typeof v === 'object' &&
      !Array.isArray(v) &&
      typeof (v as { type?: unknown }).type === 'string'
    ) {
      this.onMessage(v as Record<string, unknown>);
    } else this.onBadLine('control message without a "type"');
  }
}

export function encode(msg: ConnectorMessage | GatewayMessage): string {
  return `${JSON.stringify(msg)}\n`;
}
