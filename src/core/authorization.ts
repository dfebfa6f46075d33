import type { ErrorCode } from '../errors/index.js';
import type { LeaseRange, Store } from '../store/types.js';
import type { Clock } from './clock.js';
import type { ForwardRegistry } from './forward-registry.js';
import { isValidLabel } from './ids.js';
import { type LeaseCluster, LeaseService } from './leases.js';

export type ForwardDecision = { ok: true; port: number } | { ok: false; code: ErrorCode; reason: string };

export function rangeText(r: LeaseRange): string {
  return `${r.low}-${r.high}`;
}

export interface AuthorizerOptions {
  /** The lease policy; by default the range with 30-day/1-hour TTLs and a margin of 5. */
  leases?: LeaseService;
  /** Cluster membership: the quota then counts every live member's forwards. */
  cluster?: LeaseCluster;
}

/**
 * The decision for one `tcpip-forward` request: label, tenant state, quota, lease. The quota
 * check and the lease it grants happen in one store transaction holding the tenant's lock
 * (PostgreSQL: an advisory lock every cluster member waits for), and in a cluster the granted
 * forward is written into the directory before the lock is released, so two members deciding
 * for one tenant at once see each other's grants. Callers still serialise per tenant locally
 * (KeyedMutex) and register the forward before the next decision.
 */
export class ForwardAuthorizer {
  readonly leases: LeaseService;

  constructor(
    private readonly store: Store,
    registry: ForwardRegistry,
    range: LeaseRange,
    clock: Clock,
    opts: AuthorizerOptions = {},
  ) {
    this.leases =
      opts.leases ??
      new LeaseService(
        store,
        registry,
        clock,
        { range, leaseTtl: 30 * 86_400_000, unusedLeaseTtl: 3_600_000, leaseMargin: 5 },
        undefined,
        undefined,
        opts.cluster,
      );
  }

  async authorizeForward(tenant: string, label: string, requestedPort: number): Promise<ForwardDecision> {
    if (!isValidLabel(label)) {
      return {
        ok: false,
        code: 'LABEL_INVALID',
        reason: `invalid forward label ${JSON.stringify(label.slice(0, 80))}: use <group>/<repo> (printable ASCII, at most 200 characters)`,
      };
    }
    return this.store.withTenantLock(tenant, async (tx): Promise<ForwardDecision> => {
      const t = await tx.getTenant(tenant);
      if (!t) return { ok: false, code: 'TENANT_NOT_FOUND', reason: 'tenant no longer exists' };
      if (t.quota === 0) return { ok: false, code: 'TENANT_DISABLED', reason: 'tenant disabled (quota 0)' };
      const live = await this.leases.liveLabels(tx, tenant);
      if (!live.has(label) && live.size >= t.quota) {
        return {
          ok: false,
          code: 'TENANT_QUOTA_EXCEEDED',
          reason: `quota exceeded (${live.size} of ${t.quota} in use)`,
        };
      }
      if (requestedPort !== 0) {
        const existing = await tx.getLease(tenant, label);
        if (!existing || existing.port !== requestedPort) {
          return {
            ok: false,
            code: 'PORT_NOT_LEASED',
            reason: `port ${requestedPort} is not this tenant's lease for ${label} (ask for port 0 to get your lease)`,
          };
        }
      }
      const d = await this.leases.allocate(tx, tenant, label, t.quota, live);
      if (!d.ok) return d;
      await this.leases.claim(tx, tenant, label, d.lease.port);
      return { ok: true, port: d.lease.port };
    });
  }
}
