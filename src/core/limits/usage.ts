/**
 * Traffic usage: the byte accounting behind the quotas. Counters per (tenant, repository,
 * UTC day) in the store, counted in memory as bytes pass and flushed every few seconds and on
 * stop; the sums in effect for each quota's window, read back from the store (other cluster
 * members' bytes too); and the log lines when a quota runs out and when it is available again.
 */
import type { Logger } from '../../log/index.js';
import type { Store, TrafficRow } from '../../store/types.js';
import type { Clock } from '../clock.js';
import { formatBytes, formatPeriod } from '../units.js';
import { DAY_MS, dayOf, type Limits, periodWindow } from './policy.js';

/** Counters older than this are pruned. */
const KEEP_DAYS = 400;

export interface UsageView {
  /** The period the bytes are counted over: the quota's, or the calendar month. */
  period: string;
  period_start: string;
  /** When a monthly period starts again (null for a rolling one). */
  resets_at: string | null;
  bytes_in: number;
  bytes_out: number;
  bytes: number;
  /** Whether the traffic quota is spent (new connections are refused). */
  exhausted: boolean;
}

export type Counter = { in: number; out: number };

/** The map key of a tenant ('' label) or one of its repositories. */
export const key = (tenant: string, label: string) => `${tenant}\0${label}`;

function add(map: Map<string, Counter>, k: string, i: number, o: number): void {
  const c = map.get(k);
  if (c) {
    c.in += i;
    c.out += o;
  } else map.set(k, { in: i, out: o });
}

/**
 * Under `workers`: the bytes the other workers counted and have not written to the store yet,
 * so that a quota holds across workers as it does in one process (a worker re-reads the store's
 * sums only every few seconds). What one worker counts goes to the others (over the primary) at
 * most every SHARE_EVERY_MS; once it wrote them, it says up to which message, and the others drop
 * those bytes after their next read of the store (which then holds them).
 */
export interface UsageShare {
  /** Counts made here since the last message: message `seq` (1, 2, …) of this worker. */
  counted(seq: number, rows: Array<[key: string, bytesIn: number, bytesOut: number]>): void;
  /** Every count up to message `upTo` is in the store. */
  written(upTo: number): void;
  /** What the other workers say; returns the unsubscribe. */
  onPeer(fn: (e: PeerUsage) => void): () => void;
}

export type PeerUsage =
  | { worker: number; kind: 'counted'; seq: number; rows: Array<[string, number, number]> }
  | { worker: number; kind: 'written'; upTo: number }
  /** The worker died: what it counted and did not write is gone with it. */
  | { worker: number; kind: 'gone' };

/** How often (at most) a worker tells the others what it counted. */
const SHARE_EVERY_MS = 20;

/**
 * Another worker's counts: by message until written (`batches`, with their sum in `live`, which
 * is what a quota check reads), then until this worker's next read (`written`, one sum per read
 * they wait for).
 */
interface Peer {
  batches: Array<{ seq: number; counts: Map<string, Counter> }>;
  live: Map<string, Counter>;
  written: Array<{ before: number; counts: Map<string, Counter> }>;
}

/** The limits in effect: tenants (label '') first, then repositories. */
export type PolicyList = () => Iterable<[tenant: string, label: string, limits: Limits]>;

/** The byte counters of one gateway and the quota usage they add up to. */
export class TrafficUsage {
  /** Sums from the store by window start day, then tenant\0label. */
  private stored = new Map<string, Map<string, Counter>>();
  private pending = new Map<string, Counter>();
  private inflight = new Map<string, Counter>();
  private readonly exhausted = new Set<string>();
  private flushing?: Promise<void>;
  private lastPrune = 0;
  /** Under `workers`: counts not told to the others yet, the last message's number and time. */
  private outbox = new Map<string, Counter>();
  private seq = 0;
  private sentAt = 0;
  private shareTimer?: NodeJS.Timeout;
  private readonly peers = new Map<number, Peer>();
  /** Reads of the store begun (a peer's written counts go once a read begun after it ended). */
  private reads = 0;
  private unsubscribe?: () => void;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly policies: PolicyList,
    private readonly share?: UsageShare,
  ) {
    this.unsubscribe = share?.onPeer((e) => this.onPeer(e));
  }

  /** Counts bytes of a tenant's repository (written to the store at the next flush). */
  count(tenant: string, label: string, bytesIn: number, bytesOut: number): void {
    const k = key(tenant, label);
    add(this.pending, k, bytesIn, bytesOut);
    if (!this.share) return;
    add(this.outbox, k, bytesIn, bytesOut);
    if (this.shareTimer) return;
    this.shareTimer = setTimeout(() => this.tell(), Math.max(0, this.sentAt + SHARE_EVERY_MS - Date.now()));
    this.shareTimer.unref();
  }

  /** Tells the other workers what was counted since the last message. */
  private tell(): void {
    if (this.shareTimer) clearTimeout(this.shareTimer);
    this.shareTimer = undefined;
    if (!this.share || this.outbox.size === 0) return;
    const rows: Array<[string, number, number]> = [];
    for (const [k, c] of this.outbox) rows.push([k, c.in, c.out]);
    this.outbox = new Map();
    this.sentAt = Date.now();
    this.share.counted(++this.seq, rows);
  }

  private onPeer(e: PeerUsage): void {
    let p = this.peers.get(e.worker);
    if (e.kind === 'gone') {
      // its unwritten counts died with it; what it wrote stays counted until the next read
      if (p) {
        p.batches = [];
        p.live = new Map();
      }
      return;
    }
    if (!p) {
      p = { batches: [], live: new Map(), written: [] };
      this.peers.set(e.worker, p);
    }
    if (e.kind === 'counted') {
      const counts = new Map<string, Counter>();
      for (const [k, i, o] of e.rows) {
        add(counts, k, i, o);
        add(p.live, k, i, o);
      }
      p.batches.push({ seq: e.seq, counts });
      return;
    }
    const before = this.reads + 1;
    let into = p.written.at(-1);
    if (into?.before !== before) {
      into = { before, counts: new Map() };
      p.written.push(into);
    }
    const keep: Peer['batches'] = [];
    for (const b of p.batches) {
      if (b.seq > e.upTo) {
        keep.push(b);
        continue;
      }
      for (const [k, c] of b.counts) {
        add(p.live, k, -c.in, -c.out);
        if (p.live.get(k)?.in === 0 && p.live.get(k)?.out === 0) p.live.delete(k);
        add(into.counts, k, c.in, c.out);
      }
    }
    p.batches = keep;
  }

  /** Stops listening to the other workers. */
  close(): void {
    this.unsubscribe?.();
    if (this.shareTimer) this.tell();
  }

  /** Bytes of a tenant ('' = all its repositories) or one repository in the period's window. */
  bytes(tenant: string, label: string, period: string): Counter {
    const w = periodWindow(period, this.clock.now()).start;
    const out = { in: 0, out: 0 };
    const sum = (m: Map<string, Counter> | undefined) => {
      if (!m) return;
      if (label !== '') {
        const c = m.get(key(tenant, label));
        if (c) {
          out.in += c.in;
          out.out += c.out;
        }
        return;
      }
      const prefix = `${tenant}\0`;
      for (const [k, c] of m) {
        if (k.startsWith(prefix)) {
          out.in += c.in;
          out.out += c.out;
        }
      }
    };
    sum(this.stored.get(w));
    sum(this.inflight);
    sum(this.pending);
    for (const p of this.peers.values()) {
      sum(p.live);
      for (const b of p.written) sum(b.counts);
    }
    return out;
  }

  /** The usage of a tenant ('' label) or a repository against limits `l`, for the admin API. */
  view(tenant: string, label: string, l: Limits): UsageView {
    const period = l.trafficPeriod ?? 'month';
    const w = periodWindow(period, this.clock.now());
    const u = this.bytes(tenant, label, period);
    return {
      period,
      period_start: w.start,
      resets_at: w.resets,
      bytes_in: u.in,
      bytes_out: u.out,
      bytes: u.in + u.out,
      exhausted: l.trafficLimit !== null && u.in + u.out >= l.trafficLimit,
    };
  }

  /** The limits changed: the next read logs exhaustion again if the quota is still spent. */
  clearExhausted(tenant: string, label: string): void {
    this.exhausted.delete(key(tenant, label));
  }

  /** Forgets the counters of a removed tenant that are not written yet. */
  forget(tenant: string): void {
    const prefix = `${tenant}\0`;
    for (const m of [this.pending, this.inflight]) {
      for (const k of [...m.keys()]) if (k.startsWith(prefix)) m.delete(k);
    }
    for (const m of this.stored.values())
      for (const k of [...m.keys()]) if (k.startsWith(prefix)) m.delete(k);
    for (const p of this.peers.values())
      for (const m of [p.live, ...p.batches.map((b) => b.counts), ...p.written.map((b) => b.counts)])
        for (const k of [...m.keys()]) if (k.startsWith(prefix)) m.delete(k);
  }

  /** Writes the counted bytes to the store, then re-reads the sums (other members' too). */
  flush(): Promise<void> {
    this.flushing ??= this.doFlush().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  /**
   * Writes everything counted so far: a flush already running took its snapshot before the
   * last bytes were counted, so wait for it and then write the rest (stop uses this).
   */
  async flushAll(): Promise<void> {
    await this.flushing?.catch(() => {});
    await this.flush();
  }

  private async doFlush(): Promise<void> {
    // `inflight`: bytes written (or being written) to the store but not read back yet.
    this.tell(); // the others learn every count of this snapshot before they hear it is written
    const upTo = this.seq;
    const snapshot = this.pending;
    this.pending = new Map();
    for (const [k, c] of snapshot) add(this.inflight, k, c.in, c.out);
    const day = dayOf(this.clock.now());
    const rows: TrafficRow[] = [];
    for (const [k, c] of snapshot) {
      const i = k.indexOf('\0');
      rows.push({ tenant_id: k.slice(0, i), label: k.slice(i + 1), day, bytes_in: c.in, bytes_out: c.out });
    }
    try {
      await this.store.addTraffic(rows);
    } catch (err) {
      for (const [k, c] of snapshot) {
        add(this.inflight, k, -c.in, -c.out);
        add(this.pending, k, c.in, c.out);
      }
      this.log.warn({ err }, 'could not write traffic counters; will retry');
      return;
    }
    if (snapshot.size > 0) this.share?.written(upTo);
    await this.reload();
    this.inflight = new Map();
    const now = this.clock.now();
    if (now - this.lastPrune > DAY_MS) {
      this.lastPrune = now;
      await this.store
        .pruneTraffic(dayOf(now - KEEP_DAYS * DAY_MS))
        .catch((err: unknown) => this.log.warn({ err }, 'could not prune old traffic counters'));
    }
  }

  /** Reads the sums of every window a quota in effect counts over (and the calendar month). */
  async reload(): Promise<void> {
    const read = ++this.reads;
    const now = this.clock.now();
    const windows = new Set<string>([periodWindow('month', now).start]);
    for (const [, , l] of this.policies())
      if (l.trafficPeriod) windows.add(periodWindow(l.trafficPeriod, now).start);
    const next = new Map<string, Map<string, Counter>>();
    for (const w of windows) {
      const m = new Map<string, Counter>();
      for (const r of await this.store.trafficSince(w)) {
        m.set(key(r.tenant_id, r.label), { in: r.bytes_in, out: r.bytes_out });
      }
      next.set(w, m);
    }
    this.stored = next;
    // another worker's counts it wrote before this read began are in `stored` now
    for (const p of this.peers.values()) p.written = p.written.filter((b) => b.before > read);
    this.noteExhaustion();
  }

  /** Logs once when a quota runs out (the operator sees it), and when it is available again. */
  private noteExhaustion(): void {
    for (const [tenant, label, l] of this.policies()) {
      const k = key(tenant, label);
      if (l.trafficLimit === null) {
        this.exhausted.delete(k);
        continue;
      }
      const period = l.trafficPeriod ?? 'month';
      const u = this.bytes(tenant, label, period);
      const spent = u.in + u.out >= l.trafficLimit;
      if (spent && !this.exhausted.has(k)) {
        this.exhausted.add(k);
        const w = periodWindow(period, this.clock.now());
        this.log.warn(
          {
            event: 'tenant.traffic_exhausted',
            tenant,
            ...(label ? { label } : {}),
            traffic_limit: l.trafficLimit,
            traffic_period: period,
            bytes: u.in + u.out,
            resets_at: w.resets,
          },
          `traffic quota of ${label ? `${tenant} ${label}` : tenant} exhausted (${formatBytes(l.trafficLimit)} ${formatPeriod(period)}): new connections are refused`,
        );
      } else if (!spent && this.exhausted.delete(k)) {
        this.log.info(
          { event: 'tenant.traffic_available', tenant, ...(label ? { label } : {}) },
          `traffic quota of ${label ? `${tenant} ${label}` : tenant} available again`,
        );
      }
    }
  }
}
