import type { GatewayConfig } from '../config/gateway.js';
import type { Clock } from '../core/clock.js';
import type { TenantEvents } from '../core/events.js';
import type { ForwardRegistry } from '../core/forward-registry.js';
import type { LeaseService } from '../core/leases.js';
import type { Logger } from '../log/index.js';
import type { Store } from '../store/types.js';
import type { LeaseBinder } from '../tunnel/lease-binder.js';

/** The settings cluster membership reads: `cluster`, and `store` (the PostgreSQL URL it listens on). */
export type ClusterConfig = Pick<GatewayConfig, 'cluster' | 'store'>;

/** What cluster membership uses of the running gateway; the composition root (src/gateway/) passes it. */
export interface ClusterDeps {
  log: Logger;
  clock: Clock;
  /** Heartbeats, the member list and the shared forward directory. */
  store: Pick<
    Store,
    | 'initSetting'
    | 'heartbeat'
    | 'reapNodes'
    | 'setNodeForwards'
    | 'publishNodeForwards'
    | 'listNodes'
    | 'listDirectory'
  >;
  /** This member's live forwards, and the other members' forwards it relays to. */
  registry: ForwardRegistry;
  /** Admin changes, passed to and from the other members. */
  events: Pick<TenantEvents, 'on' | 'emit'>;
  /** Leases granted here and not registered yet: they are published too. */
  leases: Pick<LeaseService, 'hasClaims' | 'directoryRows'>;
  /** Lease ports of other members' forwards are bound here too, and relayed. */
  leasePorts: LeaseBinder;
  /**
   * Which process of a member with `workers` > 1 this is: the primary (tenant changes and the
   * directory's view only: no lease port, no relay, no forwards of its own), or a worker, named
   * `node` in the directory (`<node_id>/worker-<slot>`). Absent: the member's only process.
   */
  process?: { kind: 'primary' } | { kind: 'worker'; node: string };
}
