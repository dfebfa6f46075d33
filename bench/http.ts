/**
 * 4. HTTP requests per second: 64 keep-alive connections, one request in flight on each, to a
 * small HTTP server (a 34-byte JSON answer) through each path; rounds alternate, median reported.
 * The load generator is bench/lib/loadgen.mjs (pre-built requests on plain sockets).
 */
import { loadgen, median, round } from './lib/procs.js';
import { PATHS, type PathName, type Rig } from './lib/rig.js';

interface HttpRun {
  requests: number;
  errors: number;
  rps: number;
  p50_ms: number;
  p99_ms: number;
}

export interface HttpResult {
  seconds: number;
  connections: number;
  rps: Record<PathName, number>;
  p99_ms: Record<PathName, number>;
  errors: Record<PathName, number>;
  ratio_tether_openssh: number;
  ratio_tether_direct: number;
}

export async function httpRate(
  rig: Rig,
  o: { seconds: number; rounds: number; connections?: number },
): Promise<HttpResult> {
  const connections = o.connections ?? 64;
  const runs = { direct: [], openssh: [], tether: [] } as Record<PathName, HttpRun[]>;
  for (let r = 0; r < o.rounds; r++) {
    const order = r % 2 === 0 ? PATHS : [...PATHS].reverse();
    for (const p of order) {
      runs[p].push(await loadgen<HttpRun>(['http', '127.0.0.1', rig.ports[p].http, o.seconds, connections]));
    }
  }
  const med = (p: PathName, k: 'rps' | 'p99_ms') => median(runs[p].map((x) => x[k]));
  const rps = {
    direct: round(med('direct', 'rps'), 0),
    openssh: round(med('openssh', 'rps'), 0),
    tether: round(med('tether', 'rps'), 0),
  };
  return {
    seconds: o.seconds,
    connections,
    rps,
    p99_ms: {
      direct: round(med('direct', 'p99_ms')),
      openssh: round(med('openssh', 'p99_ms')),
      tether: round(med('tether', 'p99_ms')),
    },
    errors: {
      direct: runs.direct.reduce((a, x) => a + x.errors, 0),
      openssh: runs.openssh.reduce((a, x) => a + x.errors, 0),
      tether: runs.tether.reduce((a, x) => a + x.errors, 0),
    },
    ratio_tether_openssh: round(rps.tether / rps.openssh),
    ratio_tether_direct: round(rps.tether / rps.direct),
  };
}
