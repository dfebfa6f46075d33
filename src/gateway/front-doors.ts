import type { GatewayConfig } from '../config/gateway.js';
import type { Component, ComponentFactory, Gateway, GatewayContext } from './index.js';

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
    };
  };
}

/** Wires every optional part the config can turn on. */
export function withFrontDoors(gw: Gateway): Gateway {
  return gw
    .use(
      lazy(
        'cluster',
        (c) => c.cluster,
        async () => (await import('../cluster/index.js')).clusterComponent,
      ),
    )
    .use(
      lazy(
        'tunnel_tls',
        (c) => c.tunnel.tls,
        async () => (await import('../tunnel/transports/index.js')).tlsTunnelComponent,
      ),
    )
    .use(
      lazy(
        'tunnel_websocket',
        (c) => c.tunnel.websocket,
        async () => (await import('../tunnel/transports/index.js')).websocketTunnelComponent,
      ),
    )
    .use(
      lazy(
        'access_proxy',
        (c) => c.access_proxy,
        async () => (await import('../frontdoor/access-proxy/index.js')).accessProxyComponent,
      ),
    )
    .use(
      lazy(
        'http_proxy',
        (c) => c.http_proxy,
        async () => (await import('../frontdoor/http-proxy/index.js')).httpProxyComponent,
      ),
    )
    .use(
      lazy(
        'ssh_proxy',
        (c) => c.ssh_proxy,
        async () => (await import('../frontdoor/ssh-proxy/index.js')).sshProxyComponent,
      ),
    );
}
