import type { Clock } from '../../core/clock.js';
import type { ThrottleShare } from '../../core/throttle.js';
import type { Logger } from '../../log/index.js';
import type { ConnectionBroker } from '../../tunnel/broker.js';
import type { ListenFn } from '../../tunnel/listen.js';
import type { ProxyProtocolGate } from '../../tunnel/proxy-header.js';
import type { AccessAuthorizerDeps } from './authorize.js';

/** What the access proxy uses of the running gateway; the composition root (src/gateway/) passes it. */
export interface AccessProxyDeps {
  /** Under `workers`: failures counted by every worker (see ThrottleShare). */
  throttles?: ThrottleShare;
  log: Logger;
  clock: Clock;
  /** Tenants' repositories (the authorizer looks the target up). */
  store: AccessAuthorizerDeps['store'];
  /** Live forwards: the authorizer finds them, the proxy opens connections through them. */
  registry: AccessAuthorizerDeps['registry'];
  /** Group keys: checked per request, made as forwards come online. */
  groupKeys: AccessAuthorizerDeps['groupKeys'];
  /** Opens and splices the forwarded connections, and accounts for them. */
  broker: Pick<ConnectionBroker, 'open' | 'splice'>;
  /** PROXY protocol on its listener (`access_proxy.proxy_protocol`). */
  proxyGate?: Pick<ProxyProtocolGate, 'guard'>;
  /** Under `workers` with `worker_accept: primary`: opens its listener through the primary. */
  listen?: ListenFn;
}
