/**
 * 7. Cores: 8 tenants (8 real connectors, each with its own iperf3 server) pushing bulk data at
 * once through the gateway, with the gateway on one core (one process pinned to CPU 0) and on
 * two (two cluster members, pinned to CPU 0 and CPU 1, each holding 4 of the sessions). The
 * connectors and iperf3 are not pinned: on a 2-core machine they compete with the gateway.
 *
 * Then the same load through one gateway on the embedded store with `workers: 1` and with
 * `workers: N` (N = 2, and 4 when the machine has at least 6 cores), alternating round by round:
 * aggregate throughput, the CPU of all the gateway's processes (primary and workers; above 100%
 * it used more than one core), new connections/s from many callers over every tenant's service
 * (and the gateway's CPU per connection), which workers carry the sessions, and the idle memory
 * of all of them (the physical pages they hold together, and their summed RSS).
 * With at least 4 cores the load generators are pinned away from the gateway's CPUs (taskset);
 * on a smaller machine they share the cores, and the figures say so.
 */

import { availableParallelism } from 'node:os';
import { type Cluster, startCluster } from './lib/cluster.js';
import {
  type Connector,
  type Gateway,
  startConnector,
  startGateway,
  startIperf,
  startServers,
} from './lib/paths.js';
import { type Child, connRate, cpuOf, median, memoryOf, round, sleep, withDescendants } from './lib/procs.js';
import { IDLE_S } from './memory.js';
import { iperf } from './throughput.js';

export interface CoresRun {
  gateway_cores: number;
  gbps: number;
  all_gbps: number[];
  gateway_cpu_percent: number;
}

export interface WorkersRun {
  workers: number;
  /** `worker_accept`: the primary passes each connection on, or the workers accept themselves. */
  accept: 'primary' | 'os';
  gbps: number;
  all_gbps: number[];
  /** CPU of the primary and its workers together, percent of one core. */
  gateway_cpu_percent: number;
  /** New connections/s from many callers spread over every tenant's echo service, median of rounds. */
  conns_per_s: number;
  all_conns_per_s: number[];
  /** CPU of the gateway's processes per new connection, ms (median of rounds). */
  gateway_ms_per_conn: number;
  /** Sessions per worker (`worker-1`: 4, …); one process: `single`. */
  sessions_on: Record<string, number>;
  /** Summed RSS of all the gateway's processes once idle (heap trimmed), MiB. */
  idle_rss_mib: number;
  /**
   * Physical memory all the gateway's processes hold together once idle, MiB: each resident
   * page once (bench/lib/procs.ts, `memoryOf`), where the summed RSS counts the node binary's
   * shared pages again for every process.
   */
  idle_memory_mib: number;
}

export interface CoresResult {
  tenants: number;
  seconds: number;
  runs: CoresRun[];
  scaling: number;
  /** One gateway, `workers: 1` against `workers: N`. */
  workers?: {
    cpus: number;
    pinned: boolean;
    note?: string;
    runs: WorkersRun[];
    scaling: number;
    /** New connections/s, `workers: N` / `workers: 1`. */
    conn_scaling: number;
    /** `workers: N`, `worker_accept: os` against the primary passing connections on: connections/s. */
    os_conns_ratio: number;
    /** The same, gateway CPU per new connection. */
    os_cpu_ratio: number;
    /** Idle physical memory, `workers: N` / `workers: 1`. */
    memory_ratio: number;
    /** Idle summed RSS, `workers: N` / `workers: 1`. */
    rss_ratio: number;
    /** How the physical memory was read: resident page frames, or summed PSS without root. */
    memory_how: 'pages' | 'pss';
  };
}

/**
 * Every connector's iperf3 at once for `seconds`: their summed Gbit/s, and the CPU of the gateway
 * processes `pids` meanwhile (percent of one core).
 */
async function bulkRound(
  conns: Connector[],
  pids: number[],
  seconds: number,
  hostOf?: (i: number) => string | undefined,
): Promise<{ gbps: number; cpuPercent: number }> {
  const c0 = cpuOf(pids);
  const t0 = Date.now();
  const res = await Promise.all(
    conns.map((cn, i) => {
      const host = hostOf?.(i);
      return iperf(cn.ports.get('bench/iperf')!, 1, seconds, host ? { host } : {});
    }),
  );
  return {
    gbps: res.reduce((a, x) => a + x, 0),
    cpuPercent: ((cpuOf(pids) - c0) / ((Date.now() - t0) / 1000)) * 100,
  };
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
      const x = await bulkRound(
        conns,
        c.members.map((m) => m.pid),
        o.seconds,
        (i) => c.ips[i % c.members.length],
      );
      cpu.push(x.cpuPercent);
      all.push(x.gbps);
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
  return {
    tenants,
    seconds: o.seconds,
    runs,
    scaling: round(runs[1]!.gbps / runs[0]!.gbps),
    workers: await workersRuns(tenants, o),
  };
}

/**
 * `workers: 1`, `workers: N` and `workers: N` with `worker_accept: os` on one gateway each, the
 * same load, rounds alternating.
 */
export async function workersRuns(
  tenants: number,
  o: { seconds: number; rounds: number },
): Promise<NonNullable<CoresResult['workers']>> {
  const cpus = availableParallelism();
  const n = cpus >= 6 ? 4 : 2;
  const pinned = cpus >= 4;
  // the gateway on the first n CPUs, the load generators on the others (when there are others)
  const gatewayCpus = pinned ? `0-${n - 1}` : undefined;
  const loadCpus = pinned ? `${n}-${cpus - 1}` : undefined;
  // the third: the same workers accepting their connections themselves (`worker_accept: os`)
  const sides: Array<{ workers: number; accept: 'primary' | 'os' }> = [
    { workers: 1, accept: 'primary' },
    { workers: n, accept: 'primary' },
    { workers: n, accept: 'os' },
  ];
  const setups: Array<{
    gw: Gateway;
    conns: Connector[];
    iperfs: Array<{ port: number; child: Child }>;
    idle: ReturnType<typeof memoryOf>;
  }> = [];
  const servers = await startServers(loadCpus);
  try {
    for (const side of sides) {
      const gw = await startGateway({
        cpus: gatewayCpus,
        ports: 40,
        config: { workers: side.workers, worker_accept: side.accept },
      });
      setups.push({ gw, conns: [], iperfs: [], idle: { rss: 0, resident: 0, how: 'pages' } });
    }
    // all idle at once, long enough for the idle heap trim (src/tunnel/heap-trim.ts)
    await sleep(IDLE_S * 1000);
    for (const s of setups) s.idle = memoryOf(withDescendants(s.gw.pid));
    for (const { gw, conns, iperfs } of setups) {
      for (let i = 0; i < tenants; i++) {
        iperfs.push(await startIperf(loadCpus));
        const key = await gw.addTenant(`bench${i}`);
        conns.push(
          await startConnector(gw, `bench${i}`, key, {
            'bench/iperf': iperfs[i]!.port,
            'bench/echo': servers.echo,
          }),
        );
      }
    }
    const all: number[][] = sides.map(() => []);
    const cpu: number[][] = sides.map(() => []);
    const rate: number[][] = sides.map(() => []);
    const perConn: number[][] = sides.map(() => []);
    for (let r = 0; r < o.rounds; r++) {
      const order = r % 2 === 0 ? [0, 1, 2] : [2, 1, 0];
      for (const k of order) {
        const { gw, conns } = setups[k]!;
        const x = await bulkRound(conns, withDescendants(gw.pid), o.seconds);
        cpu[k]!.push(x.cpuPercent);
        all[k]!.push(x.gbps);
      }
      for (const k of order) {
        const { gw, conns } = setups[k]!;
        const targets = conns.map((cn) => `127.0.0.1:${cn.ports.get('bench/echo')!}`);
        const x = await connRate(targets, o.seconds, 32, withDescendants(gw.pid), loadCpus);
        rate[k]!.push(x.per_s);
        perConn[k]!.push(x.cpuMsPerConn);
      }
    }
    const runs: WorkersRun[] = [];
    for (const [k, side] of sides.entries()) {
      const { gw } = setups[k]!;
      const on: Record<string, number> = {};
      for (let i = 0; i < tenants; i++) {
        const t = (await gw.api('GET', `/v1/tenants/bench${i}`)).json as {
          tenant: { forwards: Array<{ node: string | null }> };
        };
        const node = t.tenant.forwards[0]?.node ?? 'single';
        on[node] = (on[node] ?? 0) + 1;
      }
      runs.push({
        workers: side.workers,
        accept: side.accept,
        gbps: round(median(all[k]!)),
        all_gbps: all[k]!.map((x) => round(x)),
        gateway_cpu_percent: round(median(cpu[k]!), 0),
        conns_per_s: round(median(rate[k]!), 0),
        all_conns_per_s: rate[k]!.map((x) => round(x, 0)),
        gateway_ms_per_conn: round(median(perConn[k]!), 3),
        sessions_on: on,
        idle_rss_mib: round(setups[k]!.idle.rss / 2 ** 20, 1),
        idle_memory_mib: round(setups[k]!.idle.resident / 2 ** 20, 1),
      });
    }
    return {
      cpus,
      pinned,
      ...(pinned
        ? {}
        : {
            note: `${cpus} CPUs: the load generators share them with the gateway, so throughput says little; the CPU figure shows whether the gateway uses more than one core`,
          }),
      runs,
      scaling: round(runs[1]!.gbps / runs[0]!.gbps),
      conn_scaling: round(runs[1]!.conns_per_s / runs[0]!.conns_per_s),
      os_conns_ratio: round(runs[2]!.conns_per_s / runs[1]!.conns_per_s),
      os_cpu_ratio: round(runs[2]!.gateway_ms_per_conn / runs[1]!.gateway_ms_per_conn),
      memory_ratio: round(runs[1]!.idle_memory_mib / runs[0]!.idle_memory_mib),
      rss_ratio: round(runs[1]!.idle_rss_mib / runs[0]!.idle_rss_mib),
      memory_how: setups.some((s) => s.idle.how === 'pss') ? 'pss' : 'pages',
    };
  } finally {
    for (const s of setups) {
      for (const cn of s.conns) await cn.stop();
      for (const p of s.iperfs) await p.child.stop();
      await s.gw.stop();
    }
    await servers.child.stop();
  }
}
