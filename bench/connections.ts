/**
 * 3. New connections per second: connect, 1-byte echo, close, in a loop with 16 connections at
 * a time, through each path to an echo server; rounds alternate the paths, median reported.
 */
import { type ConnRateRun, connRate, median, round } from './lib/procs.js';
import { PATHS, type PathName, type Rig } from './lib/rig.js';

export interface ConnectionsResult {
  seconds: number;
  concurrency: number;
  per_s: Record<PathName, number>;
  errors: Record<PathName, number>;
  p99_ms: Record<PathName, number>;
  /** CPU milliseconds the tunnel processes used per connection (gateway+connector; sshd+ssh). */
  cpu_ms_per_connection: Record<PathName, number>;
  /** The same for every round, in the order run. */
  all_cpu_ms_per_connection?: Record<PathName, number[]>;
  ratio_tether_openssh: number;
}

export async function connectionRate(
  rig: Rig,
  o: { seconds: number; rounds: number; concurrency?: number },
): Promise<ConnectionsResult> {
  const concurrency = o.concurrency ?? 16;
  const runs = { direct: [], openssh: [], tether: [] } as Record<PathName, ConnRateRun[]>;
  const cpu = { direct: [], openssh: [], tether: [] } as Record<PathName, number[]>;
  for (let r = 0; r < o.rounds; r++) {
    const order = r % 2 === 0 ? PATHS : [...PATHS].reverse();
    for (const p of order) {
      // sshd forks per session, not per forwarded connection: the same pids cover the run.
      const r = await connRate([`127.0.0.1:${rig.ports[p].echo}`], o.seconds, concurrency, rig.pids[p]());
      cpu[p].push(r.cpuMsPerConn);
      runs[p].push(r);
    }
  }
  const per = (p: PathName) => round(median(runs[p].map((x) => x.per_s)), 0);
  const res: ConnectionsResult = {
    seconds: o.seconds,
    concurrency,
    per_s: { direct: per('direct'), openssh: per('openssh'), tether: per('tether') },
    errors: {
      direct: runs.direct.reduce((a, x) => a + x.errors, 0),
      openssh: runs.openssh.reduce((a, x) => a + x.errors, 0),
      tether: runs.tether.reduce((a, x) => a + x.errors, 0),
    },
    p99_ms: {
      direct: round(median(runs.direct.map((x) => x.p99_ms)), 2),
      openssh: round(median(runs.openssh.map((x) => x.p99_ms)), 2),
      tether: round(median(runs.tether.map((x) => x.p99_ms)), 2),
    },
    cpu_ms_per_connection: {
      direct: 0,
      openssh: round(median(cpu.openssh), 2),
      tether: round(median(cpu.tether), 2),
    },
    all_cpu_ms_per_connection: {
      direct: [],
      openssh: cpu.openssh.map((x) => round(x, 2)),
      tether: cpu.tether.map((x) => round(x, 2)),
    },
    ratio_tether_openssh: 0,
  };
  res.ratio_tether_openssh = round(res.per_s.tether / res.per_s.openssh);
  return res;
}
