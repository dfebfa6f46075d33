import type { Clock } from '../../core/clock.js';
import type { ForwardRegistry } from '../../core/forward-registry.js';
import type { RefusalLog } from '../../core/refusals.js';
import type { ThrottleShare } from '../../core/throttle.js';
import type { Logger } from '../../log/index.js';
import type { ConnectionBroker } from '../../tunnel/broker.js';
import type { ListenFn } from '../../tunnel/listen.js';
import type { ProxyProtocolGate } from '../../tunnel/proxy-header.js';
import type { SourceAllowlists } from '../../tunnel/source-allowlists.js';
import type { RouteAuthenticator } from './caller-auth.js';
import type { Route } from './routes.js';
import type { UpstreamCredential } from './upstream-auth/index.js';
import type { UpstreamPool } from './upstream-pooled.js';

/** A route with everything it needs at request time. */
export interface PreparedRoute extends Route {
  auth: RouteAuthenticator;
  credential?: UpstreamCredential;
  /** Keep-alive connection pool for URL targets (upstream-pooled.ts). */
  pool?: UpstreamPool;
}

export interface FrontDoorDeps {
  /** Under `workers`: failures counted by every worker (see ThrottleShare). */
  throttles?: ThrottleShare;
  registry: Pick<ForwardRegistry, 'open' | 'get'>;
  /** Opens channels to tenant repositories (built over `registry` when absent). */
  broker?: Pick<ConnectionBroker, 'open'>;
  clock: Clock;
  log: Logger;
  /**
   * Called once per request when it ends (metrics): its route ("-" when none matched), the
   * status sent (0 when the caller went away before any), and seconds from accept to close.
   */
  onResponse?: (route: string, status: number, seconds?: number) => void;
  /** Called when a caller presented wrong credentials (metrics). */
  onAuthFailure?: (route: string) => void;
  /** PROXY protocol on its listener (`http_proxy.proxy_protocol`). */
  proxyGate?: Pick<ProxyProtocolGate, 'guard'>;
  /** Under `workers` with `worker_accept: primary`: opens its listener through the primary. */
  listen?: ListenFn;
  /** Source-address allowlists of tenant routes: a caller outside them is answered 403. */
  allowlists?: Pick<SourceAllowlists, 'callerRefusal'>;
  /** Counts refused requests (`tether_refused_total{reason}`); built from `log` and `clock` when absent. */
  refusals?: Pick<RefusalLog, 'refuse'>;
}
