import { clusterComponent } from '../cluster/index.js';
import { accessProxyComponent } from '../frontdoor/access-proxy/index.js';
import { httpProxyComponent } from '../frontdoor/http-proxy/index.js';
import { sshProxyComponent } from '../frontdoor/ssh-proxy/index.js';
import { tlsTunnelComponent, websocketTunnelComponent } from '../tunnel/transports/index.js';
import type { Gateway } from './index.js';

/**
 * Wires every optional part the config can turn on. Each part declares the narrow deps it uses
 * (an interface in its own folder); this is the one place that picks them from the running core.
 */
export function withFrontDoors(gw: Gateway): Gateway {
  return gw
    .use((c) =>
      clusterComponent(c.config, {
        log: c.log,
        clock: c.clock,
        store: c.store,
        registry: c.registry,
        events: c.events,
        leases: c.leases,
        leasePorts: c.listeners,
      }),
    )
    .use((c) => tlsTunnelComponent(c.config.tunnel, { tunnel: c.tunnel, log: c.log }))
    .use((c) => websocketTunnelComponent(c.config.tunnel, { tunnel: c.tunnel, log: c.log }))
    .use((c) =>
      accessProxyComponent(c.config.access_proxy, {
        log: c.log,
        clock: c.clock,
        store: c.store,
        registry: c.registry,
        groupKeys: c.groupKeys,
      }),
    )
    .use((c) =>
      httpProxyComponent(c.config.http_proxy, {
        log: c.log,
        clock: c.clock,
        registry: c.registry,
        groupKeys: c.groupKeys,
        events: c.events,
        metrics: c.metrics,
      }),
    )
    .use((c) =>
      sshProxyComponent(c.config.ssh_proxy, {
        dataDir: c.config.data_dir,
        log: c.log,
        clock: c.clock,
        registry: c.registry,
        groupKeys: c.groupKeys,
        store: c.store,
        metrics: c.metrics,
      }),
    );
}
