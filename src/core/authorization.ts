import type { LeaseRange, Store } from '../store/types.js';
import { type Clock, iso } from './clock.js';
import type { ForwardRegistry } from './forward-registry.js';
import { isValidLabel } from './ids.js';

export type ForwardDecision = { ok: true; port: number } | { ok: false; code: string; reason: string };

export function rangeText(r: LeaseRange): string {
  return `${r.low}-${r.high}`;
}

/**
 * The decision for one `tcpip-forward` request: label, tenant state, quota, lease. Callers
 * serialise per tenant (KeyedMutex) and register the forward before the next decision.
 */
export class ForwardAuthorizer {
  constructor(
    private readonly store: Store,
    private readonly registry: ForwardRegistry,
    private readonly range: LeaseRange,
    private readonly clock: Clock,
  ) {}

  async authorizeForward(tenant: string, label: string, requestedPort: number): Promise<ForwardDecision> {
    if (!isValidLabel(label)) {
      return {
        ok: false,
        code: 'LABEL_INVALID',
        reason: `invalid forward label ${JSON.stringify(label.slice(0, 80))}: use <group>/<repo> (printable ASCII, at most 200 characters)`,
      };
    }
    const t = await this.store.getTenant(tenant);
    if (!t) return { ok: false, code: 'TENANT_NOT_FOUND', reason: 'tenant no longer exists' };
    if (t.quota === 0) return { ok: false, code: 'TENANT_DISABLED', reason: 'tenant disabled (quota 0)' };
    const alreadyLive =
      this.registry.get(tenant, label) !== undefined || this.registry.remoteOf(tenant, label).length > 0;
    if (!alreadyLive) {
      const inUse = this.registry.countLabels(tenant);
      if (inUse >= t.quota) {
        return {
          ok: false,
          code: 'TENANT_QUOTA_EXCEEDED',
          reason: `quota exceeded (${inUse} of ${t.quota} in use)`,
        };
      }
    }
    if (requestedPort !== 0) {
      const existing = await this.store.getLease(tenant, label);
      if (!existing || existing.port !== requestedPort) {
        return {
          ok: false,
          code: 'PORT_NOT_LEASED',
          reason: `port ${requestedPort} is not this tenant's lease for ${label} (ask for port 0 to get your lease)`,
        };
      }
    }
    const lease = await this.store.leasePort(tenant, label, this.range, iso(this.clock));
    if (!lease) {
      return {
        ok: false,
        code: 'PORT_RANGE_EXHAUSTED',
        reason: `no free port left in the range ${rangeText(this.range)}`,
      };
    }
    return { ok: true, port: lease.port };
  }
}
