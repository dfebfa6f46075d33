import type { GatewayConfig } from '../config/gateway.js';
import type { Component } from '../core/component.js';
import type { ComponentFactory, Gateway, GatewayContext } from './index.js';

/**
 * A part the config may turn on, loaded only when it does: its module (and what it pulls in:
 * `pg` for the cluster, `ws` for the WebSocket transport, the HTTP and SSH front doors) is
 * imported when the gateway starts it, so a gateway that does not use it does not carry it.
 */
function lazy(
  name: string,
  enabled: (c: GatewayConfig) => unknown,
  load: () => Promise<ComponentFactory>,
): ComponentFactory {
  return (ctx: GatewayContext): Component | undefined => {
    if (!enabled(ctx.config)) return undefined;
    let inner: Component | undefined;
    return {
      name,
      start: async () => {
        inner = (await load())(ctx);
        return inner ? inner.start() : '';
      },
      stop: async () => {
        await inner?.stop();
      },
      drain: async () => {
        await inner?.drain?.();
      },
    };
  };
}

/**
 * Cluster membership (`cluster`), in every process of a member: under `workers`, the primary
 * passes tenant changes and shows the directory, and each worker is a node of its own.
 */
export const clusterPart: ComponentFactory = lazy(
  'cluster',
  (c) => c.cluster,
  async () => {
    const { clusterComponent } = await import('../cluster/index.js');
    const { workerNode } = await import('./workers/protocol.js');
    return (c) =>
      clusterComponent(c.config, {
        log: c.log,
        clock: c.clock,
        store: c.store,
        registry: c.registry,
        events: c.events,
        leases: c.leases,
        leasePorts: c.listeners,
        process:
          c.role?.kind === 'primary'
            ? { kind: 'primary' }
            : c.role?.kind === 'worker'
              ? { kind: 'worker', node: workerNode(c.role.slot, c.nodeId) }
              : undefined,
      });
  },
);

/**
 * Wires every optional part the config can turn on. Each part declares the narrow deps it uses
 * (an interface in its own folder); this is the one place that picks them from the running core.
 */
export function withFrontDoors(gw: Gateway): Gateway {
  return gw
    .use(clusterPart)
    .use(
      lazy(
        'tunnel_tls',
        (c) => c.tunnel.tls,
        async () => {
          const { tlsTunnelComponent } = await import('../tunnel/transports/index.js');
          return (c) => tlsTunnelComponent(c.config.tunnel, { tunnel: c.tunnel, log: c.log });
        },
      ),
    )
    .use(
      lazy(
        'tunnel_websocket',
        (c) => c.tunnel.websocket,
        async () => {
          const { websocketTunnelComponent } = await import('../tunnel/transports/index.js');
          return (c) => websocketTunnelComponent(c.config.tunnel, { tunnel: c.tunnel, log: c.log });
        },
      ),
    )
    .use(
      lazy(
        'access_proxy',
        (c) => c.access_proxy,
        async () => {
          const { accessProxyComponent } = await import('../frontdoor/access-proxy/index.js');
          return (c) =>
            accessProxyComponent(c.config.access_proxy, {
              log: c.log,
              clock: c.clock,
              throttles: c.throttles,
              store: c.store,
              registry: c.registry,
              groupKeys: c.groupKeys,
              broker: c.broker,
              proxyGate: c.proxyGate('access_proxy', c.config.access_proxy!),
              ...(c.listen ? { listen: c.listen } : {}),
            });
        },
      ),
    )
    .use(
      lazy(
        'http_proxy',
        (c) => c.http_proxy,
        async () => {
          const { httpProxyComponent } = await import('../frontdoor/http-proxy/index.js');
          return (c) =>
            httpProxyComponent(c.config.http_proxy, {
              log: c.log,
              clock: c.clock,
              throttles: c.throttles,
              registry: c.registry,
              groupKeys: c.groupKeys,
              events: c.events,
              metrics: c.metrics,
              broker: c.broker,
              allowlists: c.allowlists,
              refusals: c.refusals,
              proxyGate: c.proxyGate('http_proxy', c.config.http_proxy!),
              ...(c.listen ? { listen: c.listen } : {}),
              ...(c.sharedVerdicts ? { verdicts: c.sharedVerdicts } : {}),
              ...(c.sharedSecrets ? { secrets: c.sharedSecrets } : {}),
            });
        },
      ),
    )
    .use(
      lazy(
        'ssh_proxy',
        (c) => c.ssh_proxy,
        async () => {
          const { sshProxyComponent } = await import('../frontdoor/ssh-proxy/index.js');
          return (c) =>
            sshProxyComponent(c.config.ssh_proxy, {
              dataDir: c.config.data_dir,
              log: c.log,
              clock: c.clock,
              throttles: c.throttles,
              registry: c.registry,
              groupKeys: c.groupKeys,
              store: c.store,
              metrics: c.metrics,
              broker: c.broker,
              proxyGate: c.proxyGate('ssh_proxy', c.config.ssh_proxy!),
              ...(c.listen ? { listen: c.listen } : {}),
              ...(c.sharedSlots ? { sharedSlots: c.sharedSlots } : {}),
            });
        },
      ),
    );
}
