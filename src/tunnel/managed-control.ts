/**
 * Managed repositories on the control channel, the gateway's side: every logged-in connector
 * gets its tenant's proposals after `welcome` (then `proposals-done`), and again whenever the
 * operator changes them (on any cluster member: the `managed` tenant change). A connector's
 * `managed` reports are validated here, where they enter, bounded per session, and handed to
 * the service that stores and audits them.
 */
import type { TenantEvents } from '../core/events.js';
import { cleanText, parseLabel } from '../core/ids.js';
import {
  MANAGED_STATES,
  MAX_MANAGED_URI,
  type ManagedRepoService,
  type ManagedStateName,
} from '../core/managed-repos.js';
import type { RefusalLog } from '../core/refusals.js';
import type { Logger } from '../log/index.js';
import type { GatewayMessage } from './control-protocol.js';

/** One connector's control channel, as managed repositories see it. */
export interface ManagedPeer {
  tenant: string;
  fingerprint: string;
  source: string;
  /** From the connector's hello (cleaned); null until then. */
  hostname: string | null;
  send: (m: GatewayMessage) => void;
  slog: Logger;
}

/** What a tenant session calls (tenant-session.ts, control-messages.ts). */
export interface ManagedHooks {
  /** The control channel is up (welcome sent). Returns the detach. */
  attach(peer: ManagedPeer): () => void;
  /** The connector said `managed-ready`: send it the proposals, now and on every change. */
  ready(peer: ManagedPeer): void;
  /** A `managed` message from the connector. */
  report(peer: ManagedPeer, msg: Record<string, unknown>): void;
}

/** Reports one session may send per second, sustained (bursts up to REPORT_BURST). */
const REPORTS_PER_SECOND = 20;
const REPORT_BURST = 400;
const MAX_REASON = 500;

interface Attached {
  peer: ManagedPeer;
  tokens: number;
  refilled: number;
  /** Last state stored per label: the same answer again is not written again. */
  last: Map<string, string>;
  /** Said managed-ready: gets proposals. */
  ready: boolean;
}

export class ManagedControl implements ManagedHooks {
  private readonly byTenant = new Map<string, Set<Attached>>();
  private readonly peers = new WeakMap<ManagedPeer, Attached>();

  constructor(
    private readonly service: ManagedRepoService,
    events: TenantEvents,
    private readonly refusals: RefusalLog,
    private readonly now: () => number,
    private readonly log: Logger,
  ) {
    events.on((c) => {
      if (c.kind === 'managed') this.resend(c.tenant);
    });
  }

  attach(peer: ManagedPeer): () => void {
    const a: Attached = { peer, tokens: REPORT_BURST, refilled: this.now(), last: new Map(), ready: false };
    let set = this.byTenant.get(peer.tenant);
    if (!set) {
      set = new Set();
      this.byTenant.set(peer.tenant, set);
    }
    set.add(a);
    this.peers.set(peer, a);
    return () => {
      set.delete(a);
      if (set.size === 0 && this.byTenant.get(peer.tenant) === set) this.byTenant.delete(peer.tenant);
    };
  }

  ready(peer: ManagedPeer): void {
    const a = this.peers.get(peer);
    if (!a || a.ready) return;
    a.ready = true;
    void this.sendAll([a], peer.tenant);
  }

  private resend(tenant: string): void {
    const ready = [...(this.byTenant.get(tenant) ?? [])].filter((a) => a.ready);
    if (ready.length > 0) void this.sendAll(ready, tenant);
  }

  private async sendAll(to: Attached[], tenant: string): Promise<void> {
    try {
      const rows = await this.service.proposals(tenant);
      for (const a of to) {
        a.last.clear(); // stored states may have gone with the change: write the answers again
        for (const r of rows) a.peer.send({ type: 'propose', label: r.label, uri: r.uri });
        a.peer.send({ type: 'proposals-done' });
      }
    } catch (err) {
      this.log.warn({ err, tenant }, 'could not send the managed repositories to the connectors');
    }
  }

  report(peer: ManagedPeer, msg: Record<string, unknown>): void {
    const a = this.peers.get(peer);
    if (!a) return;
    const bad = (why: string): void => {
      this.refusals.refuse(
        'bad_managed_report',
        `${peer.tenant}\0${peer.source}`,
        { tenant: peer.tenant, source: peer.source },
        `managed report refused: ${why}`,
      );
      peer.send({ type: 'error', code: 'BAD_MANAGED_REPORT', message: `managed report refused: ${why}` });
    };
    const { label, state, reason, uri } = msg;
    if (typeof label !== 'string' || !parseLabel(label)) {
      bad('the label must be <group>/<repo>');
      return;
    }
    if (typeof state !== 'string' || !MANAGED_STATES.includes(state as ManagedStateName)) {
      bad(`state must be one of ${MANAGED_STATES.join(', ')}`);
      return;
    }
    if (reason !== null && reason !== undefined && typeof reason !== 'string') {
      bad('reason must be text');
      return;
    }
    if (typeof uri !== 'string' || uri.length > MAX_MANAGED_URI) {
      bad('uri must be the proposed URI');
      return;
    }
    const now = this.now();
    a.tokens = Math.min(REPORT_BURST, a.tokens + ((now - a.refilled) / 1000) * REPORTS_PER_SECOND);
    a.refilled = now;
    if (a.tokens < 1) {
      this.refusals.refuse(
        'managed_reports_per_session',
        `${peer.tenant}\0${peer.source}`,
        { tenant: peer.tenant, source: peer.source },
        `managed report refused: more than ${REPORTS_PER_SECOND} per second (bursts of ${REPORT_BURST})`,
      );
      return;
    }
    a.tokens -= 1;
    const why = typeof reason === 'string' ? cleanText(reason, MAX_REASON) : null;
    const key = `${state}\0${why ?? ''}\0${uri}`;
    if (a.last.get(label) === key) return;
    if (!a.last.has(label) && a.last.size >= 1000) a.last.clear();
    a.last.set(label, key);
    this.service
      .report(
        peer.tenant,
        { fingerprint: peer.fingerprint, hostname: peer.hostname },
        { label, uri, state: state as ManagedStateName, reason: why },
      )
      .catch((err: unknown) => peer.slog.warn({ err, label }, 'could not store a managed report'));
  }
}
