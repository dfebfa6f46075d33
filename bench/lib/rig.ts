/**
 * The shared setup for the path comparisons (throughput, latency, connections, HTTP): one set
 * of destination servers, and the same destinations reached directly, through OpenSSH and
 * through Tether.
 */
import {
  type Connector,
  type Gateway,
  type OpenSsh,
  type Servers,
  startConnector,
  startGateway,
  startIperf,
  startOpenSsh,
  startServers,
} from './paths.js';
import { withDescendants } from './procs.js';

export type PathName = 'direct' | 'openssh' | 'tether';
export const PATHS: PathName[] = ['direct', 'openssh', 'tether'];

export interface Ports {
  iperf: number;
  echo: number;
  http: number;
  source: number;
}

export interface Rig {
  servers: Servers;
  gateway: Gateway;
  connector: Connector;
  openssh: OpenSsh;
  ports: Record<PathName, Ports>;
  /** Processes whose CPU time a path costs (besides the destination and the load generator). */
  pids: Record<PathName, () => number[]>;
  stop(): Promise<void>;
}

export async function startRig(o: { gatewayFlags?: string[]; connectorFlags?: string[] } = {}): Promise<Rig> {
  const servers = await startServers();
  const iperf = await startIperf();
  const dest = {
    'bench/iperf': iperf.port,
    'bench/echo': servers.echo,
    'bench/http': servers.http,
    'bench/source': servers.source,
  };
  const gateway = await startGateway({ nodeFlags: o.gatewayFlags });
  const key = await gateway.addTenant('bench');
  const connector = await startConnector(gateway, 'bench', key, dest, { nodeFlags: o.connectorFlags });
  const openssh = await startOpenSsh(dest);
  const via = (m: Map<string, number>): Ports => ({
    iperf: m.get('bench/iperf')!,
    echo: m.get('bench/echo')!,
    http: m.get('bench/http')!,
    source: m.get('bench/source')!,
  });
  return {
    servers,
    gateway,
    connector,
    openssh,
    ports: {
      direct: { iperf: iperf.port, echo: servers.echo, http: servers.http, source: servers.source },
      openssh: via(openssh.ports),
      tether: via(connector.ports),
    },
    pids: {
      direct: () => [],
      openssh: () => [...withDescendants(openssh.sshdPid), openssh.sshPid],
      tether: () => [gateway.pid, connector.pid],
    },
    stop: async () => {
      await connector.stop();
      await openssh.stop();
      await gateway.stop();
      await iperf.child.stop();
      await servers.child.stop();
    },
  };
}
