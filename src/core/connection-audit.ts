import type { Logger } from '../log/index.js';
import type { ConnectionRecordRow, Store } from '../store/types.js';
import type { Clock } from './clock.js';
import type { RefusalLog } from './refusals.js';

/** How a forwarded connection came to its end (`outcome` of its audit record). */
export type ConnectionOutcome = 'closed' | 'error' | 'refused';

/** What the connection broker knows of a connection when it ends (or is refused). */
export interface ConnectionRecord {
  tenant: string;
  label: string;
  frontDoor: string;
  /** The caller's address as `address:port` (the real one when a relay or proxy named it). */
  source: string;
  /** Who the caller is, when the front door authenticated one (token subject, group, SSH user). */
  identity?: string;
  /** The connector session that served it: its address, agent and session id. */
  connector?: string;
  bytesIn: number;
  bytesOut: number;
  openedAt: number;
  endedAt: number;
  outcome: ConnectionOutcome;
  /** Why it was refused or failed. */
  reason?: string;
}

export interface ConnectionAuditOptions {
  /** How long records are kept (ms); 0 keeps none in the store. */
  retention: number;
  /** Buffered records are written at least this often (ms). */
  flushInterval: number;
  /** Records written in one batch at most. */
  batch: number;
  /** Records held while the store is slow or down; past it, new records are dropped and counted. */
  maxBuffered: number;
}

export const CONNECTION_AUDIT_DEFAULTS: ConnectionAuditOptions = {
  retention: 30 * 86_400_000,
  flushInterval: 1_000,
  batch: 500,
  maxBuffered: 20_000,
};

/** How often old records are deleted. */
const PRUNE_EVERY_MS = 3_600_000;

/** Characters kept of an identity or a reason (they come from callers and upstreams). */
const MAX_TEXT = 256;

const clip = (s: string | undefined) => (s === undefined ? null : s.slice(0, MAX_TEXT));

/**
 * One audit record per forwarded connection, in the store: records are buffered and written in
 * batches (no synchronous write per connection), kept for `retention`, and read back per tenant
 * (`tether tenants audit`, the admin API, the dashboard). The buffer is bounded: when the store
 * cannot keep up, the newest records are dropped and counted (`bound.refused`,
 * reason `audit_buffer`) rather than held without limit.
 */
export class ConnectionAudit {
  private buffer: ConnectionRecordRow[] = [];
  private flushTimer?: unknown;
  private pruneTimer?: unknown;
  private flushing?: Promise<void>;
  private stopped = false;

  constructor(
    private readonly store: Pick<Store, 'addConnectionRecords' | 'pruneConnectionRecords'>,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly refusals: RefusalLog,
    private readonly opts: ConnectionAuditOptions = CONNECTION_AUDIT_DEFAULTS,
  ) {}

  /** Whether records are kept in the store at all (`audit.retention` above 0). */
  get enabled(): boolean {
    return this.opts.retention > 0;
  }

  /** Records held, not written yet. */
  get buffered(): number {
    return this.buffer.length;
  }

  record(r: ConnectionRecord): void {
    if (!this.enabled || this.stopped) return;
    if (this.buffer.length >= this.opts.maxBuffered) {
      this.refusals.refuse(
        'audit_buffer',
        '',
        { limit: this.opts.maxBuffered },
        `connection audit records dropped: ${this.opts.maxBuffered} are waiting for the store`,
      );
      return;
    }
    this.buffer.push({
      tenant_id: r.tenant,
      label: r.label,
      front_door: r.frontDoor,
      source: r.source.slice(0, MAX_TEXT),
      identity: clip(r.identity),
      connector: clip(r.connector),
      bytes_in: r.bytesIn,
      bytes_out: r.bytesOut,
      opened_at: new Date(r.openedAt).toISOString(),
      ended_at: new Date(r.endedAt).toISOString(),
      duration_ms: Math.max(0, r.endedAt - r.openedAt),
      outcome: r.outcome,
      reason: clip(r.reason),
    });
    if (this.buffer.length >= this.opts.batch) void this.flush();
    else this.arm();
  }

  /** Starts the retention sweep (the first one at once). */
  start(): void {
    if (!this.enabled) return;
    void this.prune();
  }

  /** Writes what is buffered now (one batch after another); concurrent calls share the run. */
  flush(): Promise<void> {
    this.flushing ??= this.writeAll().finally(() => {
      this.flushing = undefined;
      if (this.buffer.length > 0 && !this.stopped) this.arm();
    });
    return this.flushing;
  }

  /** Writes every buffered record and stops the timers. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.flushTimer !== undefined) this.clock.clearTimeout(this.flushTimer);
    if (this.pruneTimer !== undefined) this.clock.clearTimeout(this.pruneTimer);
    this.flushTimer = this.pruneTimer = undefined;
    await this.flushing;
    await this.writeAll();
  }

  private arm(): void {
    if (this.flushTimer !== undefined || this.stopped) return;
    this.flushTimer = this.clock.setTimeout(() => {
      this.flushTimer = undefined;
      void this.flush();
    }, this.opts.flushInterval);
  }

  private async writeAll(): Promise<void> {
    while (this.buffer.length > 0) {
      const batch = this.buffer.splice(0, this.opts.batch);
      try {
        await this.store.addConnectionRecords(batch);
      } catch (err) {
        // Put them back (in front) for the next try; the bound above still holds.
        this.buffer.unshift(...batch.slice(0, Math.max(0, this.opts.maxBuffered - this.buffer.length)));
        this.log.warn({ err, records: batch.length }, 'could not write connection audit records; will retry');
        return;
      }
    }
  }

  private async prune(): Promise<void> {
    const before = new Date(this.clock.now() - this.opts.retention).toISOString();
    try {
      const n = await this.store.pruneConnectionRecords(before);
      if (n > 0)
        this.log.info({ event: 'audit.pruned', records: n, before }, `deleted ${n} old connection records`);
    } catch (err) {
      this.log.warn({ err }, 'could not delete old connection audit records');
    }
    if (this.stopped) return;
    this.pruneTimer = this.clock.setTimeout(() => {
      this.pruneTimer = undefined;
      void this.prune();
    }, PRUNE_EVERY_MS);
  }
}
