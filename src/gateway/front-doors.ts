import { clusterComponent } from '../cluster/index.js';
import { accessProxyComponent } from '../frontdoor/access-proxy/index.js';
import { httpProxyComponent } from '../frontdoor/http-proxy/index.js';
import { sshProxyComponent } from '../frontdoor/ssh-proxy/index.js';
import { tlsTunnelComponent, websocketTunnelComponent } from '../tunnel/transports/index.js';
import type { Gateway } from './index.js';

/** Wires every optional part the config can turn on. */
export function withFrontDoors(gw: Gateway): Gateway {
  return gw
    .use(clusterComponent)
    .use(tlsTunnelComponent)
    .use(websocketTunnelComponent)
    .use(accessProxyComponent)
    .use(httpProxyComponent)
    .use(sshProxyComponent);
}
