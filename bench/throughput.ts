/**
 * 1. Bulk throughput with iperf3 (Debian), 1 and 8 streams, direct / OpenSSH / Tether, in the
 * same run, alternating paths within each round; the median of the rounds is reported.
 * Direction: -R (the destination behind the tunnel sends, the caller on the gateway side
 * receives: a download from a private service).
 */

import { cpuSplitOf, median, round, runOut, sleep } from './lib/procs.js';
import { PATHS, type PathName, type Rig } from './lib/rig.js';

export interface ThroughputResult {
  streams: number;
  seconds: number;
  rounds: number;
  gbps: Record<PathName, number>;
  all_gbps: Record<PathName, number[]>;
  /** CPU seconds the tunnel processes used per GB moved (gateway+connector; sshd+ssh). */
  cpu_s_per_gb: Record<PathName, number>;
  /** CPU seconds per GB of every round, in the order run (the median hides how much it moves). */
  all_cpu_s_per_gb?: Record<PathName, number[]>;
  /** The same split into user time (the process's own code) and system time (the kernel's). */
  user_s_per_gb?: Record<PathName, number>;
  sys_s_per_gb?: Record<PathName, number>;
  ratio_tether_openssh: number;
  ratio_tether_direct: number;
}

/** One iperf3 test; Gbit/s received. Retries while the server is still busy with the last test. */
export async function iperf(
  port: number,
  streams: number,
  seconds: number,
  o: { reverse?: boolean; host?: string } = {},
): Promise<number> {
  let last = '';
  for (let attempt = 0; attempt < 10; attempt++) {
    const out = await runOut(
      'iperf3',
      [
        ...['-c', o.host ?? '127.0.0.1', '-p', String(port), '-t', String(seconds), '-P', String(streams)],
        ...['-J', ...(o.reverse === false ? [] : ['-R'])],
      ],
      undefined,
      (seconds + 30) * 1000,
    ).catch((e: Error) => e.message);
    try {
      const j = JSON.parse(out.slice(out.indexOf('{'))) as {
        error?: string;
        end?: { sum_received?: { bits_per_second: number } };
      };
      if (j.end?.sum_received) return j.end.sum_received.bits_per_second / 1e9;
      last = j.error ?? out;
    } catch {
      last = out;
    }
    await sleep(300);
  }
  throw new Error(`iperf3 to port ${port} failed: ${last.slice(0, 500)}`);
}

export async function throughput(
  rig: Rig,
  o: { streams: number; seconds: number; rounds: number },
): Promise<ThroughputResult> {
  const all = { direct: [], openssh: [], tether: [] } as Record<PathName, number[]>;
  const cpu = { direct: [], openssh: [], tether: [] } as Record<PathName, number[]>;
  const user = { direct: [], openssh: [], tether: [] } as Record<PathName, number[]>;
  const sys = { direct: [], openssh: [], tether: [] } as Record<PathName, number[]>;
  for (let r = 0; r < o.rounds; r++) {
    // Alternate the order between rounds so no path always runs first (or last).
    const order = r % 2 === 0 ? PATHS : [...PATHS].reverse();
    for (const p of order) {
      const pids = rig.pids[p]();
      const c0 = cpuSplitOf(pids);
      const g = await iperf(rig.ports[p].iperf, o.streams, o.seconds).catch((e: Error) => {
        throw new Error(`${p} path, ${o.streams} stream(s), round ${r + 1}: ${e.message}`);
      });
      const c1 = cpuSplitOf(pids);
      const gb = (g * o.seconds) / 8;
      all[p].push(g);
      cpu[p].push((c1.user + c1.sys - c0.user - c0.sys) / gb);
      user[p].push((c1.user - c0.user) / gb);
      sys[p].push((c1.sys - c0.sys) / gb);
    }
  }
  const gbps = { direct: median(all.direct), openssh: median(all.openssh), tether: median(all.tether) };
  return {
    streams: o.streams,
    seconds: o.seconds,
    rounds: o.rounds,
    gbps: { direct: round(gbps.direct), openssh: round(gbps.openssh), tether: round(gbps.tether) },
    all_gbps: all,
    cpu_s_per_gb: { direct: 0, openssh: round(median(cpu.openssh)), tether: round(median(cpu.tether)) },
    all_cpu_s_per_gb: {
      direct: [],
      openssh: cpu.openssh.map((x) => round(x)),
      tether: cpu.tether.map((x) => round(x)),
    },
    user_s_per_gb: { direct: 0, openssh: round(median(user.openssh)), tether: round(median(user.tether)) },
    sys_s_per_gb: { direct: 0, openssh: round(median(sys.openssh)), tether: round(median(sys.tether)) },
    ratio_tether_openssh: round(gbps.tether / gbps.openssh),
    ratio_tether_direct: round(gbps.tether / gbps.direct),
  };
}
