/**
 * The traffic limits of one gateway: the policies in effect per tenant and repository, the
 * token buckets that hold bandwidth caps, and the admission of new connections. The forward
 * registry asks `admit` before it opens a connection and `wrap`s the stream it got; a tenant
 * without any limit costs one map lookup and no wrapping. Byte counting is in ./usage.ts.
 */
import type { Duplex } from 'node:stream';
import { TetherError } from '../../errors/index.js';
import type { Logger } from '../../log/index.js';
import type { LimitsRow, Store } from '../../store/types.js';
import type { Clock } from '../clock.js';
import type { TenantEvents } from '../events.js';
import { isValidLabel } from '../ids.js';
import { MeteredDuplex, type StreamMeter, TokenBucket } from '../token-bucket.js';
import { formatBytes, formatPeriod } from '../units.js';
import {
  type Balance,
  invalid,
  type Limits,
  type LimitsPatch,
  type LimitsView,
  limitsView,
  NO_LIMITS,
  type Policy,
  periodWindow,
  type RepositoryLimitsView,
} from './policy.js';
import { key, TrafficUsage, type UsageShare, type UsageView } from './usage.js';

export interface TrafficLimitsOptions {
  /** How often byte counters go to the store (and usage is re-read), ms. */
  flushInterval?: number;
  /** Under `workers`: the bytes the other workers counted and did not write yet (see UsageShare). */
  share?: UsageShare;
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
  /** Byte counters and the usage they add up to. */
  private readonly counters: TrafficUsage;
  private timer: unknown;
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
    this.counters = new TrafficUsage(store, clock, log, () => this.policies(), opts.share);
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
    await this.counters.reload();
    this.schedule();
  }

  /**
   * Stops the timer and writes what is still counted in memory, also what was counted after
   * the snapshot of a flush already running.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    this.counters.close();
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    await this.counters.flushAll();
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
    this.checkQuotas(tenant, label);
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
      onBytes: (u, d) => this.counters.count(tenant, label, u, d),
    };
    return { metered: true, wrap: (stream) => new MeteredDuplex(stream, meter, this.clock) };
  }

  /**
   * Throws when the tenant's traffic quota, or the repository's, is spent. A process that relays
   * a caller to the one serving the repository (another worker, another member) checks this
   * first: the caller gets the reason, where the owner's refusal would only close the relay.
   */
  checkQuotas(tenant: string, label: string): void {
    const t = this.tenants.get(tenant);
    if (!t) return;
    this.checkQuota(tenant, '', t);
    const r = this.repos.get(key(tenant, label));
    if (r) this.checkQuota(tenant, label, r);
  }

  /** Counts the bytes of a connection that was not metered (called when it closes). */
  account(tenant: string, label: string, bytesIn: number, bytesOut: number): void {
    if (bytesIn === 0 && bytesOut === 0) return;
    this.counters.count(tenant, label, bytesIn, bytesOut);
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
    const u = this.counters.bytes(tenant, label, period);
    if (u.in + u.out < l.trafficLimit) return;
    const w = periodWindow(period, this.clock.now());
    const what = label === '' ? 'traffic quota' : `traffic quota of ${label}`;
    throw new TetherError(
      'TRAFFIC_QUOTA_EXHAUSTED',
      `${what} exhausted (${formatBytes(l.trafficLimit)} ${formatPeriod(period)}, ${w.resets ? `resets ${w.resets}` : 'rolling'})`,
      { status: 429 },
    );
  }

  /** The tenant's limits and this period's usage, for the admin API. */
  view(tenant: string): { limits: LimitsView; usage: UsageView } {
    const t = this.tenants.get(tenant);
    const l = t ?? { ...NO_LIMITS, balance: 'round-robin' as Balance };
    return { limits: limitsView(l, l.balance), usage: this.counters.view(tenant, '', l) };
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
    return { limits: r ? limits : null, usage: this.counters.view(tenant, label, basis) };
  }

  /** Repositories of the tenant that have their own limits. */
  repositoriesWithLimits(tenant: string): string[] {
    const prefix = `${tenant}\0`;
    return [...this.repos.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
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
    this.counters.clearExhausted(tenant, label);
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
    for (const m of [this.repos, this.buckets] as Map<string, unknown>[]) {
      for (const k of [...m.keys()]) if (k.startsWith(prefix)) m.delete(k);
    }
    this.counters.forget(tenant);
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
    return this.counters.flush();
  }

  /** The limits in effect, tenants first: what the counters sum and watch. */
  private *policies(): Iterable<[string, string, Limits]> {
    for (const [tenant, t] of this.tenants) yield [tenant, '', t];
    for (const [k, r] of this.repos) {
      const i = k.indexOf('\0');
      yield [k.slice(0, i), k.slice(i + 1), r];
    }
  }
}
