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

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly policies: PolicyList,
  ) {}

  /** Counts bytes of a tenant's repository (written to the store at the next flush). */
  count(tenant: string, label: string, bytesIn: number, bytesOut: number): void {
    add(this.pending, key(tenant, label), bytesIn, bytesOut);
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
