/**
 * 7. Cores: 8 tenants (8 real connectors, each with its own iperf3 server) pushing bulk data at
 * once through the gateway, with the gateway on one core (one process pinned to CPU 0) and on
 * two (two cluster members, pinned to CPU 0 and CPU 1, each holding 4 of the sessions). The
 * connectors and iperf3 are not pinned: on a 2-core machine they compete with the gateway.
 */
import { type Cluster, startCluster } from './lib/cluster.js';
import { type Connector, startConnector, startIperf } from './lib/paths.js';
import { type Child, cpuOf, median, round } from './lib/procs.js';
import { iperf } from './throughput.js';

export interface CoresRun {
  gateway_cores: number;
  gbps: number;
  all_gbps: number[];
  gateway_cpu_percent: number;
}

export interface CoresResult {
  tenants: number;
  seconds: number;
  runs: CoresRun[];
  scaling: number;
}

async function measure(
  c: Cluster,
  tenants: number,
  o: { seconds: number; rounds: number },
): Promise<CoresRun> {
  const iperfs: Array<{ port: number; child: Child }> = [];
  const conns: Connector[] = [];
  try {
    for (let i = 0; i < tenants; i++) {
      iperfs.push(await startIperf());
      const m = c.members[i % c.members.length]!;
      const key = await c.members[0]!.addTenant(`bench${i}`);
      conns.push(await startConnector(m, `bench${i}`, key, { 'bench/iperf': iperfs[i]!.port }));
    }
    const all: number[] = [];
    const cpu: number[] = [];
    for (let r = 0; r < o.rounds; r++) {
      const pids = c.members.map((m) => m.pid);
      const c0 = cpuOf(pids);
      const t0 = Date.now();
      const res = await Promise.all(
        conns.map((cn, i) =>
          iperf(cn.ports.get('bench/iperf')!, 1, o.seconds, { host: c.ips[i % c.members.length] }),
        ),
      );
      cpu.push(((cpuOf(pids) - c0) / ((Date.now() - t0) / 1000)) * 100);
      all.push(res.reduce((a, x) => a + x, 0));
    }
    return {
      gateway_cores: c.members.length,
      gbps: round(median(all)),
      all_gbps: all.map((x) => round(x)),
      gateway_cpu_percent: round(median(cpu), 0),
    };
  } finally {
    for (const cn of conns) await cn.stop();
    for (const p of iperfs) await p.child.stop();
  }
}

export async function cores(o: { seconds: number; rounds: number; tenants?: number }): Promise<CoresResult> {
  const tenants = o.tenants ?? 8;
  const runs: CoresRun[] = [];
  for (const [n, cpus] of [
    [1, ['0']],
    [2, ['0', '1']],
  ] as const) {
    const c = await startCluster(n, { cpus: [...cpus], ports: 40 });
    try {
      runs.push(await measure(c, tenants, o));
    } finally {
      await c.stop();
    }
  }
  return { tenants, seconds: o.seconds, runs, scaling: round(runs[1]!.gbps / runs[0]!.gbps) };
}
