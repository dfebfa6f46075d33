/**
 * Cluster: new connections per second and bulk throughput with 1 and with 3 members
 * (PostgreSQL store, connector through haproxy). With 3 members, connections are spread over
 * every member's lease port (two thirds of them relayed to the member holding the session) and
 * throughput, download and upload, is measured through a member that does not hold it (the
 * relayed path).
 */
import { type Cluster, startCluster } from './lib/cluster.js';
import { startConnector, startIperf, startServers } from './lib/paths.js';
import { loadgen, median, round } from './lib/procs.js';
import { iperf } from './throughput.js';

export interface ClusterRun {
  members: number;
  conns_per_s: number;
  conn_errors: number;
  /** Download (iperf3 -R: the service sends), median of the rounds. */
  gbps: number;
  /** Upload (the caller sends), median of the rounds. */
  gbps_up: number;
  throughput_via: string;
}

export interface ClusterResult {
  seconds: number;
  runs: ClusterRun[];
}

async function measure(c: Cluster, o: { seconds: number; rounds: number }): Promise<ClusterRun> {
  const servers = await startServers();
  const ip = await startIperf();
  const admin = c.members[0]!;
  const key = await admin.addTenant('bench');
  const conn = await startConnector(
    admin,
    'bench',
    key,
    { 'bench/echo': servers.echo, 'bench/iperf': ip.port },
    { gateway: `127.0.0.1:${c.lb!.port}` },
  );
  try {
    const t = (await admin.api('GET', '/v1/tenants/bench')).json.tenant as {
      forwards: Array<{ label: string; port: number; node: string | null }>;
    };
    const echoPort = conn.ports.get('bench/echo')!;
    const iperfPort = conn.ports.get('bench/iperf')!;
    const owner = Number(t.forwards.find((f) => f.label === 'bench/iperf')?.node?.slice(2) ?? 1) - 1;
    const viaIdx = c.members.length > 1 ? (owner + 1) % c.members.length : owner;
    const rates: number[] = [];
    const gbps: number[] = [];
    const up: number[] = [];
    let errors = 0;
    for (let r = 0; r < o.rounds; r++) {
      const res = await loadgen<{ per_s: number; errors: number }>([
        'connrate',
        c.ips.map((h) => `${h}:${echoPort}`).join(','),
        o.seconds,
        16,
      ]);
      rates.push(res.per_s);
      errors += res.errors;
      gbps.push(await iperf(iperfPort, 1, o.seconds, { host: c.ips[viaIdx] }));
      up.push(await iperf(iperfPort, 1, o.seconds, { host: c.ips[viaIdx], reverse: false }));
    }
    return {
      members: c.members.length,
      conns_per_s: round(median(rates), 0),
      conn_errors: errors,
      gbps: round(median(gbps)),
      gbps_up: round(median(up)),
      throughput_via: viaIdx === owner ? 'the member holding the session' : 'another member (relayed)',
    };
  } finally {
    await conn.stop();
    await ip.child.stop();
    await servers.child.stop();
  }
}

export async function cluster(o: { seconds: number; rounds: number }): Promise<ClusterResult> {
  const runs: ClusterRun[] = [];
  for (const n of [1, 3]) {
    const c = await startCluster(n, { haproxy: true });
    try {
      runs.push(await measure(c, o));
    } finally {
      await c.stop();
    }
  }
  return { seconds: o.seconds, runs };
}
