/**
 * Per-tenant (and per-repository) traffic policy: bandwidth caps each way, a cap on
 * concurrent connections, a monthly or rolling traffic quota, and how new connections are
 * spread over a repository's connectors. Also the byte accounting behind the quota: counters
 * per (tenant, repository, UTC day) in the store, flushed every few seconds and on stop.
 *
 * The forward registry asks `admit` before it opens a connection and `wrap`s the stream it
 * got; a tenant without any limit costs one map lookup and no wrapping.
 */
import type { Duplex } from 'node:stream';
import { TetherError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import type { LimitsRow, Store, TrafficRow } from '../store/types.js';
import type { Clock } from './clock.js';
import type { TenantEvents } from './events.js';
import { isValidLabel } from './ids.js';
import { MeteredDuplex, type StreamMeter, TokenBucket } from './token-bucket.js';
import {
  formatBytes,
  formatPeriod,
  parseRate as parseRateText,
  RATE_HINT,
  splitAmount,
  unitFactor,
} from './units.js';

export const BALANCES = ['round-robin', 'least-connections'] as const;
export type Balance = (typeof BALANCES)[number];

export const MAX_RATE = 1e12; // 1 TB/s
export const MAX_TRAFFIC = 9e15; // 9 PB: exact as a double
export const MAX_CONNECTIONS = 1_000_000;
export const MAX_PERIOD_DAYS = 366;
/** Counters older than this are pruned. */
const KEEP_DAYS = 400;

/** The limits of a tenant or of one repository; null = no limit. */
export interface Limits {
  bandwidthUp: number | null;
  bandwidthDown: number | null;
  maxConnections: number | null;
  trafficLimit: number | null;
  /** "month" or "<n>d". */
  trafficPeriod: string | null;
}

/** A change: undefined keeps a value, null removes the limit. */
export type LimitsPatch = { [K in keyof Limits]?: Limits[K] } & { balance?: Balance | null };

interface Policy extends Limits {
  balance: Balance;
}

const NO_LIMITS: Limits = {
  bandwidthUp: null,
  bandwidthDown: null,
  maxConnections: null,
  trafficLimit: null,
  trafficPeriod: null,
};

function invalid(what: string, value: unknown, hint: string): TetherError {
  const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 60)) : JSON.stringify(value);
  return new TetherError('LIMIT_INVALID', `invalid ${what} ${shown}: ${hint}`, { status: 400 });
}

const OFF = new Set(['off', 'none', 'unlimited', 'no']);

/**
 * A bandwidth: bytes per second as a number, or text such as "10MB/s", "512KiB/s",
 * "100Mbit/s", "100Mbps". 0, "0", "off" → null (no cap). Decimal prefixes are powers of
 * 1000, binary ones (KiB, MiB) powers of 1024.
 */
export function parseRate(value: unknown, what = 'bandwidth'): number | null {
  if (value === null) return null;
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw invalid(what, value, RATE_HINT);
    if (value > MAX_RATE) throw invalid(what, value, 'at most 1 TB/s');
    return value === 0 ? null : Math.max(1, Math.round(value));
  }
  if (typeof value !== 'string') throw invalid(what, value, RATE_HINT);
  const text = value.trim();
  if (OFF.has(text.toLowerCase()) || /^0+(\.0*)?$/.test(text)) return null;
  let bytes: number;
  try {
    bytes = parseRateText(text);
  } catch (e) {
    throw invalid(what, value, (e as Error).message);
  }
  if (bytes === 0) return null;
  if (bytes > MAX_RATE) throw invalid(what, value, 'at most 1 TB/s');
  return bytes;
}

const TRAFFIC_HINT = 'use an amount per period such as 500GB/month or 10GB/30d ("off" for no quota)';

/** "month", "monthly" → "month"; "30d", "30 days", "week" → "<n>d". */
export function parsePeriod(value: string): string {
  const p = value.trim().toLowerCase();
  if (p === 'month' || p === 'mo' || p === 'monthly') return 'month';
  if (p === 'day' || p === 'daily') return '1d';
  if (p === 'week' || p === 'weekly') return '7d';
  const m = /^(\d+)\s*(?:d|days?)$/.exec(p);
  if (m) {
    const n = Number(m[1]);
    if (n >= 1 && n <= MAX_PERIOD_DAYS) return `${n}d`;
    throw new Error(`a rolling period is 1 to ${MAX_PERIOD_DAYS} days, not ${n}`);
  }
  throw new Error(`unknown period "${value.trim()}": use month or a number of days such as 30d`);
}

/**
 * A traffic quota: "500GB/month", "10GB/30d", "1TB/week", or { limit: bytes, period }.
 * 0, "0", "off" → null (no quota).
 */
export function parseTraffic(value: unknown): { limit: number; period: string } | null {
  if (value === null) return null;
  const what = 'traffic quota';
  if (typeof value === 'object' && !Array.isArray(value)) {
    const o = value as { limit?: unknown; period?: unknown };
    if (typeof o.limit !== 'number' || !Number.isInteger(o.limit) || o.limit < 0) {
      throw invalid(what, value, 'limit must be a whole number of bytes');
    }
    if (o.limit > MAX_TRAFFIC) throw invalid(what, value, 'at most 9 PB');
    let period: string;
    try {
      period = parsePeriod(typeof o.period === 'string' ? o.period : 'month');
    } catch (e) {
      throw invalid(what, value, (e as Error).message);
    }
    return o.limit === 0 ? null : { limit: o.limit, period };
  }
  if (typeof value !== 'string') throw invalid(what, value, TRAFFIC_HINT);
  const text = value.trim();
  if (OFF.has(text.toLowerCase()) || /^0+(\.0*)?$/.test(text)) return null;
  const a = splitAmount(text);
  if (!a) throw invalid(what, value, TRAFFIC_HINT);
  const { amount: num, unit, per } = a;
  if (per === undefined) throw invalid(what, value, `say per what period; ${TRAFFIC_HINT}`);
  let factor: number;
  let period: string;
  try {
    factor = unitFactor(unit, false).factor;
    period = parsePeriod(per);
  } catch (e) {
    throw invalid(what, value, `${(e as Error).message}; ${TRAFFIC_HINT}`);
  }
  const bytes = Math.round(Number(num) * factor);
  if (bytes === 0) return null;
  if (bytes > MAX_TRAFFIC) throw invalid(what, value, 'at most 9 PB');
  return { limit: bytes, period };
}

/** A connection cap: a whole number; 0 or "off" → null (no cap). */
export function parseMaxConnections(value: unknown): number | null {
  if (value === null) return null;
  const hint = `use a whole number from 1 to ${MAX_CONNECTIONS} (0 or "off" for no cap)`;
  let n: number;
  if (typeof value === 'number') n = value;
  else if (typeof value === 'string' && OFF.has(value.trim().toLowerCase())) return null;
  else if (typeof value === 'string' && /^\d+$/.test(value.trim())) n = Number(value.trim());
  else throw invalid('connection cap', value, hint);
  if (!Number.isInteger(n) || n < 0 || n > MAX_CONNECTIONS) throw invalid('connection cap', value, hint);
  return n === 0 ? null : n;
}

export function parseBalance(value: unknown): Balance {
  if (typeof value === 'string' && (BALANCES as readonly string[]).includes(value)) return value as Balance;
  throw invalid('balance', value, `use ${BALANCES.join(' or ')}`);
}

const DAY_MS = 86_400_000;

export function dayOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** The counting window of a period at `now`: its first day, and when a monthly one resets. */
export function periodWindow(period: string, now: number): { start: string; resets: string | null } {
  if (period === 'month') {
    const d = new Date(now);
    const start = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
    const next = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
    return { start: dayOf(start), resets: dayOf(next) };
  }
  const days = Number(period.slice(0, -1));
  return { start: dayOf(now - (days - 1) * DAY_MS), resets: null };
}

export interface LimitsView {
  balance: Balance;
  bandwidth_up: number | null;
  bandwidth_down: number | null;
  max_connections: number | null;
  traffic_limit: number | null;
  traffic_period: string | null;
}

export type RepositoryLimitsView = Omit<LimitsView, 'balance'>;

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

type Counter = { in: number; out: number };

const key = (tenant: string, label: string) => `${tenant}\0${label}`;

function add(map: Map<string, Counter>, k: string, i: number, o: number): void {
  const c = map.get(k);
  if (c) {
    c.in += i;
    c.out += o;
  } else map.set(k, { in: i, out: o });
}

export interface TrafficLimitsOptions {
  /** How often byte counters go to the store (and usage is re-read), ms. */
  flushInterval?: number;
}

/** What the registry needs to know about an open connection's counting. */
export interface Admission {
  /** The stream to hand out: the connector's own, or a metered wrapper around it. */
  wrap(stream: Duplex): Duplex;
  /** True when the wrapper counts bytes as they pass (then close() must not count them again). */
  readonly metered: boolean;
}

/**
 * Limits and accounting of one gateway. In a cluster every member enforces caps on the
 * connections it carries and reads the shared counters every flush, so a quota holds
 * cluster-wide within a few seconds.
 */
export class TrafficLimits {
  /** Tenant policies, only for tenants that have a stored row. */
  private readonly tenants = new Map<string, Policy>();
  /** Repository policies by tenant\0label. */
  private readonly repos = new Map<string, Limits>();
  private readonly buckets = new Map<string, { up?: TokenBucket; down?: TokenBucket }>();
  /** Sums from the store by window start day, then tenant\0label. */
  private stored = new Map<string, Map<string, Counter>>();
  private pending = new Map<string, Counter>();
  private inflight = new Map<string, Counter>();
  private readonly exhausted = new Set<string>();
  private timer: unknown;
  private flushing?: Promise<void>;
  private lastPrune = 0;
  private stopped = false;
  private readonly flushInterval: number;
  private unsubscribe?: () => void;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly log: Logger,
    opts: TrafficLimitsOptions = {},
    events?: TenantEvents,
  ) {
    this.flushInterval = opts.flushInterval ?? 5000;
    this.unsubscribe = events?.on((c) => {
      if (c.kind === 'removed') this.forget(c.tenant);
      else if (c.kind === 'limits' && c.origin === 'remote') {
        this.reloadTenant(c.tenant).catch((err: unknown) =>
          this.log.warn({ err, tenant: c.tenant }, 'could not reload traffic limits'),
        );
      }
    });
  }

  /** Loads policies and counters, then flushes every `flushInterval`. */
  async start(): Promise<void> {
    for (const row of await this.store.listLimits()) this.apply(row);
    await this.reloadUsage();
    this.schedule();
  }

  /**
   * Stops the timer and writes what is still counted in memory. A flush already running took
   * its snapshot before the last bytes were counted: wait for it, then write the rest.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    await this.flushing?.catch(() => {});
    await this.flush();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.clock.setTimeout(() => {
      this.flush()
        .catch((err: unknown) => this.log.warn({ err }, 'could not read traffic counters; will retry'))
        .finally(() => this.schedule());
    }, this.flushInterval);
  }

  balance(tenant: string): Balance {
    return this.tenants.get(tenant)?.balance ?? 'round-robin';
  }

  /** Whether the tenant has any policy at all (cheap). */
  has(tenant: string): boolean {
    return this.tenants.has(tenant);
  }

  /**
   * Decides whether a new connection may open. Throws the reason when a cap or the quota is
   * reached; otherwise returns how to wrap and count its stream. `open` are the tenant's and
   * the repository's connections open (or opening) right now, this one not included.
   */
  admit(tenant: string, label: string, open: { tenant: number; repository: number }): Admission | undefined {
    const t = this.tenants.get(tenant);
    if (!t) return undefined;
    const r = this.repos.get(key(tenant, label));
    if (t.maxConnections !== null && open.tenant >= t.maxConnections) {
      throw new TetherError(
        'CONNECTION_LIMIT',
        `too many connections (${open.tenant} of ${t.maxConnections})`,
        { status: 429, retryable: true },
      );
    }
    if (r?.maxConnections != null && open.repository >= r.maxConnections) {
      throw new TetherError(
        'CONNECTION_LIMIT',
        `too many connections to ${label} (${open.repository} of ${r.maxConnections})`,
        { status: 429, retryable: true },
      );
    }
    this.checkQuota(tenant, '', t);
    if (r) this.checkQuota(tenant, label, r);
    const up = this.bucket(tenant, '', 'up') || this.bucket(tenant, label, 'up');
    const down = this.bucket(tenant, '', 'down') || this.bucket(tenant, label, 'down');
    const counted = t.trafficLimit !== null || (r?.trafficLimit ?? null) !== null;
    if (!up && !down && !counted) return undefined;
    const buckets = (dir: 'up' | 'down') => this.bucketsOf(tenant, label, dir);
    const meter: StreamMeter = {
      // Looked up per chunk: a cap changed or lifted applies to live connections too.
      get up() {
        return buckets('up');
      },
      get down() {
        return buckets('down');
      },
      onBytes: (u, d) => add(this.pending, key(tenant, label), u, d),
    };
    return { metered: true, wrap: (stream) => new MeteredDuplex(stream, meter, this.clock) };
  }

  /** Counts the bytes of a connection that was not metered (called when it closes). */
  account(tenant: string, label: string, bytesIn: number, bytesOut: number): void {
    if (bytesIn === 0 && bytesOut === 0) return;
    add(this.pending, key(tenant, label), bytesIn, bytesOut);
  }

  private bucket(tenant: string, label: string, dir: 'up' | 'down'): boolean {
    return this.buckets.get(key(tenant, label))?.[dir] !== undefined;
  }

  private bucketsOf(tenant: string, label: string, dir: 'up' | 'down'): TokenBucket[] {
    const out: TokenBucket[] = [];
    const a = this.buckets.get(key(tenant, ''))?.[dir];
    const b = this.buckets.get(key(tenant, label))?.[dir];
    if (a) out.push(a);
    if (b) out.push(b);
    return out;
  }

  private checkQuota(tenant: string, label: string, l: Limits): void {
    if (l.trafficLimit === null) return;
    const period = l.trafficPeriod ?? 'month';
    const u = this.usage(tenant, label, period);
    if (u.in + u.out < l.trafficLimit) return;
    const w = periodWindow(period, this.clock.now());
    const what = label === '' ? 'traffic quota' : `traffic quota of ${label}`;
    throw new TetherError(
      'TRAFFIC_QUOTA_EXHAUSTED',
      `${what} exhausted (${formatBytes(l.trafficLimit)} ${formatPeriod(period)}, ${w.resets ? `resets ${w.resets}` : 'rolling'})`,
      { status: 429 },
    );
  }

  /** Bytes of a tenant ('' = all its repositories) or one repository in the period's window. */
  private usage(tenant: string, label: string, period: string): Counter {
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

  /** The tenant's limits and this period's usage, for the admin API. */
  view(tenant: string): { limits: LimitsView; usage: UsageView } {
    const t = this.tenants.get(tenant);
    const l = t ?? { ...NO_LIMITS, balance: 'round-robin' as Balance };
    return { limits: limitsView(l, l.balance), usage: this.usageView(tenant, '', l) };
  }

  /** A repository's own limits (null when it has none) and its usage. */
  repositoryView(tenant: string, label: string): { limits: RepositoryLimitsView | null; usage: UsageView } {
    const r = this.repos.get(key(tenant, label));
    // Counted over its own quota's period, else over the tenant's.
    const basis =
      r && r.trafficLimit !== null
        ? r
        : { ...NO_LIMITS, trafficPeriod: this.tenants.get(tenant)?.trafficPeriod ?? null };
    const { balance: _b, ...limits } = limitsView(r ?? NO_LIMITS, 'round-robin');
    return { limits: r ? limits : null, usage: this.usageView(tenant, label, basis) };
  }

  /** Repositories of the tenant that have their own limits. */
  repositoriesWithLimits(tenant: string): string[] {
    const prefix = `${tenant}\0`;
    return [...this.repos.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
  }

  private usageView(tenant: string, label: string, l: Limits): UsageView {
    const period = l.trafficPeriod ?? 'month';
    const w = periodWindow(period, this.clock.now());
    const u = this.usage(tenant, label, period);
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

  /**
   * Changes the limits of a tenant (label '') or of one of its repositories, stores them and
   * applies them at once: caps to new connections, bandwidth also to metered live ones.
   */
  async change(tenant: string, label: string, patch: LimitsPatch, events?: TenantEvents): Promise<void> {
    if (label !== '' && !isValidLabel(label)) {
      throw invalid('repository', label, 'use the repository label <group>/<repo>');
    }
    if (label !== '' && patch.balance !== undefined) {
      throw new TetherError('LIMIT_INVALID', 'balance applies to the whole tenant, not to one repository', {
        status: 400,
      });
    }
    const current = (await this.store.listLimits(tenant)).find((r) => r.label === label);
    const pick = <T>(next: T | undefined, cur: T | null | undefined): T | null =>
      next === undefined ? (cur ?? null) : next;
    const trafficLimit = pick(patch.trafficLimit, current?.traffic_limit);
    const row: LimitsRow = {
      tenant_id: tenant,
      label,
      balance: label === '' ? pick(patch.balance, current?.balance as Balance | null) : null,
      bandwidth_up: pick(patch.bandwidthUp, current?.bandwidth_up),
      bandwidth_down: pick(patch.bandwidthDown, current?.bandwidth_down),
      max_connections: pick(patch.maxConnections, current?.max_connections),
      traffic_limit: trafficLimit,
      traffic_period:
        trafficLimit === null ? null : (pick(patch.trafficPeriod, current?.traffic_period) ?? 'month'),
      updated_at: new Date(this.clock.now()).toISOString(),
    };
    if (row.balance === 'round-robin') row.balance = null; // the default
    await this.store.setLimits(row);
    this.apply(row);
    this.log.info(
      {
        event: 'tenant.limits_changed',
        tenant,
        ...(label ? { label } : {}),
        balance: row.balance ?? (label === '' ? 'round-robin' : undefined),
        bandwidth_up: row.bandwidth_up,
        bandwidth_down: row.bandwidth_down,
        max_connections: row.max_connections,
        traffic_limit: row.traffic_limit,
        traffic_period: row.traffic_period,
      },
      `limits of ${label ? `${tenant} ${label}` : tenant} changed`,
    );
    this.exhausted.delete(key(tenant, label));
    events?.emit({ kind: 'limits', tenant });
  }

  /** Re-reads one tenant's policies (another cluster member changed them). */
  async reloadTenant(tenant: string): Promise<void> {
    const rows = await this.store.listLimits(tenant);
    this.tenants.delete(tenant);
    for (const [k] of [...this.repos]) if (k.startsWith(`${tenant}\0`)) this.repos.delete(k);
    for (const row of rows) this.apply(row);
    for (const k of [...this.buckets.keys()]) {
      if (!k.startsWith(`${tenant}\0`)) continue;
      const label = k.slice(tenant.length + 1);
      if (!rows.some((r) => r.label === label)) this.buckets.delete(k);
    }
  }

  /** Forgets a removed tenant: policies, buckets, counters not yet written. */
  forget(tenant: string): void {
    const prefix = `${tenant}\0`;
    this.tenants.delete(tenant);
    for (const m of [this.repos, this.buckets, this.pending, this.inflight] as Map<string, unknown>[]) {
      for (const k of [...m.keys()]) if (k.startsWith(prefix)) m.delete(k);
    }
    for (const m of this.stored.values())
      for (const k of [...m.keys()]) if (k.startsWith(prefix)) m.delete(k);
  }

  /** Applies one stored row to the in-memory policy and buckets. */
  private apply(row: LimitsRow): void {
    const l: Limits = {
      bandwidthUp: row.bandwidth_up,
      bandwidthDown: row.bandwidth_down,
      maxConnections: row.max_connections,
      trafficLimit: row.traffic_limit,
      trafficPeriod: row.traffic_limit === null ? null : (row.traffic_period ?? 'month'),
    };
    const k = key(row.tenant_id, row.label);
    const any =
      l.bandwidthUp !== null ||
      l.bandwidthDown !== null ||
      l.maxConnections !== null ||
      l.trafficLimit !== null ||
      (row.label === '' && row.balance !== null);
    if (row.label === '') {
      if (any)
        this.tenants.set(row.tenant_id, { ...l, balance: (row.balance as Balance | null) ?? 'round-robin' });
      else if (this.repositoriesWithLimits(row.tenant_id).length > 0)
        this.tenants.set(row.tenant_id, { ...NO_LIMITS, balance: 'round-robin' });
      else this.tenants.delete(row.tenant_id);
    } else if (any) {
      this.repos.set(k, l);
      // Repository limits are enforced through the tenant's entry: make sure it exists.
      if (!this.tenants.has(row.tenant_id))
        this.tenants.set(row.tenant_id, { ...NO_LIMITS, balance: 'round-robin' });
    } else this.repos.delete(k);
    const b = this.buckets.get(k) ?? {};
    b.up = this.rebucket(b.up, l.bandwidthUp);
    b.down = this.rebucket(b.down, l.bandwidthDown);
    if (b.up || b.down) this.buckets.set(k, b);
    else this.buckets.delete(k);
  }

  private rebucket(b: TokenBucket | undefined, rate: number | null): TokenBucket | undefined {
    if (rate === null) return undefined;
    if (!b) return new TokenBucket(rate, this.clock);
    if (b.rate !== rate) b.setRate(rate);
    return b;
  }

  /** Writes the counted bytes to the store, then re-reads the sums (other members' too). */
  flush(): Promise<void> {
    this.flushing ??= this.doFlush().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
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
    await this.reloadUsage();
    this.inflight = new Map();
    const now = this.clock.now();
    if (now - this.lastPrune > DAY_MS) {
      this.lastPrune = now;
      await this.store
        .pruneTraffic(dayOf(now - KEEP_DAYS * DAY_MS))
        .catch((err: unknown) => this.log.warn({ err }, 'could not prune old traffic counters'));
    }
  }

  private async reloadUsage(): Promise<void> {
    const now = this.clock.now();
    const windows = new Set<string>([periodWindow('month', now).start]);
    for (const t of this.tenants.values())
      if (t.trafficPeriod) windows.add(periodWindow(t.trafficPeriod, now).start);
    for (const r of this.repos.values())
      if (r.trafficPeriod) windows.add(periodWindow(r.trafficPeriod, now).start);
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
    const check = (tenant: string, label: string, l: Limits) => {
      const k = key(tenant, label);
      if (l.trafficLimit === null) {
        this.exhausted.delete(k);
        return;
      }
      const period = l.trafficPeriod ?? 'month';
      const u = this.usage(tenant, label, period);
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
    };
    for (const [tenant, t] of this.tenants) check(tenant, '', t);
    for (const [k, r] of this.repos) {
      const i = k.indexOf('\0');
      check(k.slice(0, i), k.slice(i + 1), r);
    }
  }
}

function limitsView(l: Limits, balance: Balance): LimitsView {
  return {
    balance,
    bandwidth_up: l.bandwidthUp,
    bandwidth_down: l.bandwidthDown,
    max_connections: l.maxConnections,
    traffic_limit: l.trafficLimit,
    traffic_period: l.trafficPeriod,
  };
}
