import type { Clock } from '../../core/clock.js';
import type { ForwardRegistry } from '../../core/forward-registry.js';
import type { GroupKeyService } from '../../core/group-keys.js';
import type { ThrottleShare } from '../../core/throttle.js';
import type { Logger } from '../../log/index.js';
import type { Store } from '../../store/types.js';
import type { ConnectionBroker } from '../../tunnel/broker.js';
import type { ListenFn } from '../../tunnel/listen.js';
import type { ProxyProtocolGate } from '../../tunnel/proxy-header.js';
import type { SharedSlots } from '../../tunnel/unauthenticated-slots.js';
import type { SshProxyMetrics } from './connection.js';

/** What the SSH front door uses of the running gateway; the composition root (src/gateway/) passes it. */
export interface SshProxyDeps {
  /** Under `workers`: failures counted by every worker (see ThrottleShare). */
  throttles?: ThrottleShare;
  /** Under `workers`: the unauthenticated bounds counted by the primary, for the whole gateway. */
  sharedSlots?: SharedSlots;
  /** The gateway's data dir: the generated host key is kept there (`ssh_proxy_host_key`). */
  dataDir: string;
  log: Logger;
  clock: Clock;
  /** Live forwards: tenant-realm targets, and group keys made as forwards come online. */
  registry: ForwardRegistry;
  groupKeys: GroupKeyService;
  /** Repository metadata of tenant-realm targets. */
  store: Store;
  /** One front-door request per connection, refused logins. */
  metrics: SshProxyMetrics;
  /** Opens tenant-realm connections through the tunnel, and accounts for them. */
  broker: Pick<ConnectionBroker, 'open'>;
  /** PROXY protocol on its listener (`ssh_proxy.proxy_protocol`). */
  proxyGate?: Pick<ProxyProtocolGate, 'guard'>;
  /** Under `workers` with `worker_accept: primary`: opens its listener through the primary. */
  listen?: ListenFn;
}
