import type { ErrorCode } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import type { DirectoryRow, LeaseRange, LeaseRow, Store } from '../store/types.js';
import type { Clock } from './clock.js';
import type { ForwardRegistry, LiveForward } from './forward-registry.js';
import type { RefusalLog } from './refusals.js';

/** How long leases live and how many a tenant may hold (gateway.yaml `forwards:`). */
export interface LeasePolicy {
  range: LeaseRange;
  /** An established lease not forwarded for this long is released (`lease_ttl`, 30 days). */
  leaseTtl: number;
  /** A lease that never carried a connection is released this long after its last use (1 h). */
  unusedLeaseTtl: number;
  /** Leases a tenant may hold beyond its quota (`lease_margin`, 5). */
  leaseMargin: number;
}

/** In a cluster: this member, and how old a member's heartbeat may be for its forwards to count. */
export interface LeaseCluster {
  nodeId: string;
  deadAfter: number;
}

export type LeaseDecision = { ok: true; lease: LeaseRow } | { ok: false; code: ErrorCode; reason: string };

/** A claim lives this long before its forward must be registered (else it no longer counts). */
const CLAIM_TTL_MS = 30_000;

const key = (tenant: string, label: string) => `${tenant}\0${label}`;

/**
 * Leases: a (tenant, label) keeps its port across reconnects and restarts. What bounds them:
 * a tenant holds at most quota + margin leases (the idle ones go first when it needs a new one:
 * never-used before used, oldest first); a lease that never carried a connection nor stayed up
 * for `unusedLeaseTtl` is released `unusedLeaseTtl` after its last use, an established one after
 * `leaseTtl`. Which labels are live: this member's registry, its claims not yet registered, and
 * (cluster) the directory rows of the other live members.
 */
export class LeaseService {
  /** When each local forward went up (to establish a lease that stays up long). */
  private readonly upSince = new Map<string, number>();
  /** Leases known established (skips the write); bounded by the leases, cleared each sweep. */
  private readonly established = new Set<string>();
  /** Cluster: forwards granted here, not yet in the registry (they count, and publish keeps them). */
  private readonly claims = new Map<string, { tenant: string; label: string; port: number; at: number }>();
  private watching = false;

  constructor(
    private readonly store: Store,
    private readonly registry: ForwardRegistry,
    private readonly clock: Clock,
    readonly policy: LeasePolicy,
    private readonly log?: Logger,
    private readonly refusals?: RefusalLog,
    readonly cluster?: LeaseCluster,
  ) {}

  /** How many leases a tenant with this quota may hold. */
  maxLeases(quota: number): number {
    return quota + this.policy.leaseMargin;
  }

  /** Follows forwards and connections: marks leases used, remembers when a forward went down. */
  watch(): void {
    if (this.watching) return;
    this.watching = true;
    this.registry.on('forward', (e: { type: string; forward: LiveForward }) => {
      const f = e.forward;
      const k = key(f.tenant, f.label);
      if (e.type === 'up' || e.type === 'endpoint-added') this.claims.delete(k);
      if (e.type === 'up') this.upSince.set(k, this.clock.now());
      else if (e.type !== 'down') return;
      if (e.type === 'down') {
        const since = this.upSince.get(k);
        this.upSince.delete(k);
        if (since !== undefined && this.clock.now() - since >= this.policy.unusedLeaseTtl)
          void this.establish(f.tenant, f.label);
      }
      this.store
        .updateLease(f.tenant, f.label, null, this.isoNow())
        .catch((err: unknown) => this.log?.warn({ err }, 'could not record lease use'));
    });
    this.registry.on('connection', (e: { type: string; forward: LiveForward }) => {
      if (e.type === 'opened') void this.establish(e.forward.tenant, e.forward.label);
    });
  }

  /** A lease carried a connection or stayed up long: it keeps the long TTL from now on. */
  establish(tenant: string, label: string): Promise<void> {
    const k = key(tenant, label);
    if (this.established.has(k)) return Promise.resolve();
    this.established.add(k);
    return this.store.establishLease(tenant, label, this.isoNow()).catch((err: unknown) => {
      this.established.delete(k);
      this.log?.warn({ err }, 'could not record lease use');
    });
  }

  /** The tenant's labels live anywhere: this member's forwards and claims, other live members' rows. */
  async liveLabels(tx: Store, tenant: string): Promise<Set<string>> {
    const live = new Set<string>();
    for (const f of this.registry.list(tenant)) live.add(f.label);
    const now = this.clock.now();
    for (const [k, c] of this.claims) {
      if (now - c.at > CLAIM_TTL_MS) this.claims.delete(k);
      else if (c.tenant === tenant) live.add(c.label);
    }
    if (this.cluster) {
      const liveAfter = new Date(now - this.cluster.deadAfter).toISOString();
      for (const l of await tx.directoryLabels(tenant, liveAfter, this.cluster.nodeId)) live.add(l);
    }
    return live;
  }

  /**
   * The tenant's lease for `label`, inside its lock (`tx`). A new lease past the bound releases
   * the tenant's idle leases first; `live` are the labels that must not go.
   */
  async allocate(
    tx: Store,
    tenant: string,
    label: string,
    quota: number,
    live: ReadonlySet<string>,
  ): Promise<LeaseDecision> {
    const existing = await tx.getLease(tenant, label);
    if (existing) return { ok: true, lease: existing };
    const max = this.maxLeases(quota);
    const held = await tx.listLeases(tenant);
    const excess = held.length + 1 - max;
    if (excess > 0) {
      const idle = held.filter((l) => !live.has(l.label)).sort(releaseOrder);
      if (idle.length < excess) {
        this.refusals?.refuse(
          'leases_per_tenant',
          tenant,
          { tenant, label, leases: held.length, max },
          `lease for ${label} of ${tenant} refused: it holds ${held.length} leases, all in use (at most ${max})`,
        );
        return {
          ok: false,
          code: 'TENANT_QUOTA_EXCEEDED',
          reason: `lease limit reached (${held.length} of ${max} leases held, all in use)`,
        };
      }
      for (const l of idle.slice(0, excess)) await this.release(tx, l, max, `to make room for ${label}`);
    }
    const lease = await tx.leasePort(tenant, label, this.policy.range, this.isoNow());
    if (!lease) {
      return {
        ok: false,
        code: 'PORT_RANGE_EXHAUSTED',
        reason: `no free port left in the range ${this.policy.range.low}-${this.policy.range.high}`,
      };
    }
    this.established.delete(key(tenant, label));
    return { ok: true, lease };
  }

  /** Cluster: writes this member's claim of the forward into the directory, inside the lock. */
  async claim(tx: Store, tenant: string, label: string, port: number): Promise<void> {
    if (!this.cluster) return;
    const at = this.clock.now();
    this.claims.set(key(tenant, label), { tenant, label, port, at });
    await tx.claimDirectory({
      tenant_id: tenant,
      label,
      node_id: this.cluster.nodeId,
      port,
      connectors: 0,
      updated_at: new Date(at).toISOString(),
    });
  }

  /** Whether claims wait for their forward (the cluster publishes until they are gone). */
  hasClaims(): boolean {
    return this.claims.size > 0;
  }

  /**
   * What this member (or worker) serves, as its rows of the forward directory: its live forwards
   * and the claims not yet registered (the cluster's and the workers' publish keep them).
   */
  directoryRows(nodeId: string, updatedAt: string): DirectoryRow[] {
    const now = this.clock.now();
    const rows: DirectoryRow[] = this.registry.list().map((f) => ({
      tenant_id: f.tenant,
      label: f.label,
      node_id: nodeId,
      port: f.port,
      connectors: f.endpoints.length,
      updated_at: updatedAt,
    }));
    for (const [k, c] of this.claims) {
      if (now - c.at > CLAIM_TTL_MS) {
        this.claims.delete(k);
        continue;
      }
      if (this.registry.get(c.tenant, c.label)) continue;
      rows.push({
        tenant_id: c.tenant,
        label: c.label,
        node_id: nodeId,
        port: c.port,
        connectors: 0,
        updated_at: updatedAt,
      });
    }
    return rows;
  }

  /**
   * Periodic upkeep: live leases are touched (and established once up for `unusedLeaseTtl`),
   * expired leases released, and tenants over their bound (a lowered quota, leases from before
   * the bound) trimmed to it. Returns how many leases were released.
   */
  async sweep(): Promise<number> {
    const now = this.clock.now();
    const nowIso = this.isoNow();
    this.established.clear();
    for (const f of this.registry.list()) {
      await this.store.updateLease(f.tenant, f.label, null, nowIso);
      const since = this.upSince.get(key(f.tenant, f.label));
      if (since !== undefined && now - since >= this.policy.unusedLeaseTtl)
        await this.establish(f.tenant, f.label);
    }
    const live = [...this.registry.list(), ...this.registry.remoteList()].map((f) => ({
      tenant_id: f.tenant,
      label: f.label,
    }));
    const expired = await this.store.expireLeases(
      {
        before: new Date(now - this.policy.leaseTtl).toISOString(),
        unusedBefore: new Date(now - this.policy.unusedLeaseTtl).toISOString(),
      },
      live,
    );
    for (const l of expired) {
      this.log?.info(
        {
          event: 'lease.expired',
          tenant: l.tenant_id,
          label: l.label,
          port: l.port,
          used: l.established_at !== null,
        },
        `lease ${l.label} of ${l.tenant_id} (port ${l.port}) expired`,
      );
    }
    // Spent and expired enrollment tokens are of no further use.
    await this.store.pruneEnrollments(nowIso);
    let released = expired.length;
    const counts = new Map<string, number>();
    const groups = new Map<string, Set<string>>();
    for (const l of await this.store.listLeases()) {
      counts.set(l.tenant_id, (counts.get(l.tenant_id) ?? 0) + 1);
      const g = groups.get(l.tenant_id) ?? new Set<string>();
      g.add(l.label.split('/')[0] ?? l.label);
      groups.set(l.tenant_id, g);
    }
    for (const t of await this.store.listTenants()) {
      const max = this.maxLeases(t.quota);
      await this.trimGroupKeys(t.id, max, groups.get(t.id) ?? new Set());
      if ((counts.get(t.id) ?? 0) <= max) continue;
      released += await this.store.withTenantLock(t.id, async (tx) => {
        const liveNow = await this.liveLabels(tx, t.id);
        const held = await tx.listLeases(t.id);
        const idle = held.filter((l) => !liveNow.has(l.label)).sort(releaseOrder);
        const over = Math.min(idle.length, held.length - max);
        let n = 0;
        for (const l of idle.slice(0, Math.max(0, over))) {
          await this.release(tx, l, max, 'over the bound');
          n++;
        }
        return n;
      });
    }
    return released;
  }

  /**
   * Group keys are made for every group a tenant forwards: fresh groups in a loop would add rows
   * without end. Past quota + margin keys, the keys of groups without any lease go, oldest first
   * (a group that still has a lease keeps its key).
   */
  private async trimGroupKeys(tenant: string, max: number, leased: ReadonlySet<string>): Promise<void> {
    const keys = await this.store.listGroupKeys(tenant);
    if (keys.length <= max) return;
    const orphans = keys
      .filter((k) => !leased.has(k.group_name))
      .sort((a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : 0));
    for (const k of orphans.slice(0, keys.length - max)) {
      await this.store.deleteGroupKey(tenant, k.group_name);
      this.refusals?.refuse(
        'group_keys_per_tenant',
        tenant,
        { tenant, group: k.group_name, max },
        `group key of ${tenant}/${k.group_name} removed: the group has no lease and the tenant holds more than ${max} group keys`,
      );
    }
  }

  private async release(tx: Store, l: LeaseRow, max: number, why: string): Promise<void> {
    await tx.deleteLease(l.tenant_id, l.label);
    this.established.delete(key(l.tenant_id, l.label));
    this.refusals?.refuse(
      'leases_per_tenant',
      l.tenant_id,
      { tenant: l.tenant_id, label: l.label, port: l.port, max },
      `lease ${l.label} of ${l.tenant_id} (port ${l.port}) released ${why}: at most ${max} leases per tenant`,
    );
  }

  private isoNow(): string {
    return new Date(this.clock.now()).toISOString();
  }
}

/** Which idle lease goes first: never used before used, then the longest unused. */
function releaseOrder(a: LeaseRow, b: LeaseRow): number {
  const ua = a.established_at === null ? 0 : 1;
  const ub = b.established_at === null ? 0 : 1;
  if (ua !== ub) return ua - ub;
  if (a.last_used_at !== b.last_used_at) return a.last_used_at < b.last_used_at ? -1 : 1;
  return a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : 0;
}
