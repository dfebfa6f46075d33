import type { Clock } from '../../core/clock.js';
import type { TenantEvents } from '../../core/events.js';
import type { GroupKeyService } from '../../core/group-keys.js';
import type { RefusalLog } from '../../core/refusals.js';
import type { Logger } from '../../log/index.js';
import type { ConnectionBroker } from '../../tunnel/broker.js';
import type { ListenFn } from '../../tunnel/listen.js';
import type { ProxyProtocolGate } from '../../tunnel/proxy-header.js';
import type { SourceAllowlists } from '../../tunnel/source-allowlists.js';
import type { FrontDoorDeps } from './types.js';
import type { SecretShare } from './upstream-auth/types.js';
import type { VerdictShare } from './verifiers/types.js';

/** The gateway metrics the HTTP front door moves. */
export interface HttpProxyMetrics {
  /** The front-door request counter and latency histogram, by route and status class. */
  httpProxyResponse(route: string, status: number, seconds?: number): void;
  readonly authFailures: { inc(labels: { reason: string }): void };
}

/** What the HTTP front door uses of the running gateway; the composition root (src/gateway/) passes it. */
export interface HttpProxyDeps {
  log: Logger;
  clock: Clock;
  /** Under `workers`: failures counted by every worker (see ThrottleShare). */
  throttles?: FrontDoorDeps['throttles'];
  /** Under `workers`: a route's token verdicts shared with the other workers (`scope`: its name). */
  verdicts?: (scope: string) => VerdictShare;
  /** Under `workers`: a route's upstream credential as the other workers read it. */
  secrets?: (scope: string) => SecretShare;
  /** Live forwards the routes reach. */
  registry: FrontDoorDeps['registry'];
  /** Group keys of `group-key` routes. */
  groupKeys: GroupKeyService;
  /** Tenant changes (keys rotated, tenant removed): cached answers are forgotten. */
  events: Pick<TenantEvents, 'on'>;
  metrics: HttpProxyMetrics;
  /** Opens the upstream connections through the tunnel, and accounts for them. */
  broker: Pick<ConnectionBroker, 'open'>;
  /** Source-address allowlists of the tenants its routes reach. */
  allowlists?: Pick<SourceAllowlists, 'callerRefusal'>;
  /** PROXY protocol on its listener. */
  proxyGate?: Pick<ProxyProtocolGate, 'guard'>;
  /** Under `workers` with `worker_accept: primary`: opens its listener through the primary. */
  listen?: ListenFn;
  /** Counts refusals by a bound (`bound.refused`). */
  refusals?: Pick<RefusalLog, 'refuse'>;
}
