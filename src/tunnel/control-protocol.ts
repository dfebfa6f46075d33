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
 *   enroll     only on an enrollment session (user `tether-enroll`): one-time token
 * Gateway → connector:
 *   welcome    tenant, quota, gateway version and node
 *   forward    a forward was granted: label → lease port
 *   refused    a forward was refused, with the reason the user should see
 *   pong, unregistered, enrolled, error
 */

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
  | { type: 'enroll'; token: string };

export type GatewayMessage =
  | { type: 'welcome'; tenant: string; quota: number; gateway: string; node?: string }
  | { type: 'forward'; label: string; port: number }
  | { type: 'refused'; label: string; code: string; reason: string }
  | { type: 'pong'; id: number }
  | { type: 'unregistered'; fingerprint: string }
  | { type: 'enrolled'; tenant: string; fingerprint: string }
  | { type: 'error'; code: string; message: string };

/** Splits a byte stream into JSON messages; bad lines are reported, never thrown. */
export class JsonLineDecoder {
  private buf = '';
  constructor(
    private readonly onMessage: (msg: Record<string, unknown>) => void,
    private readonly onBadLine: (why: string) => void,
  ) {}

  push(chunk: Buffer | string): void {
    this.buf += chunk.toString();
    if (this.buf.length > MAX_CONTROL_LINE && !this.buf.includes('\n')) {
      this.buf = '';
      this.onBadLine(`control line longer than ${MAX_CONTROL_LINE} bytes`);
      return;
    }
    let i = this.buf.indexOf('\n');
    while (i >= 0) {
      const line = this.buf.slice(0, i).trim();
      this.buf = this.buf.slice(i + 1);
      if (line !== '') {
        try {
          const v = JSON.parse(line) as unknown;
          if (
            v !== null &&
            typeof v === 'object' &&
            !Array.isArray(v) &&
            typeof (v as { type?: unknown }).type === 'string'
          ) {
            this.onMessage(v as Record<string, unknown>);
          } else this.onBadLine('control message without a "type"');
        } catch {
          this.onBadLine('control line is not JSON');
        }
      }
      i = this.buf.indexOf('\n');
    }
  }
}

export function encode(msg: ConnectorMessage | GatewayMessage): string {
  return `${JSON.stringify(msg)}\n`;
}
