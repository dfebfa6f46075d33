/**
 * 2. Request latency: 1 KiB ping-pong on one connection at a fixed 1,000 requests/s (one request
 * in flight; the next one goes at its scheduled time, or as soon as the answer arrives when it
 * is late), through each path to an echo server. Latency is measured from each send.
 */
import { loadgen, round } from './lib/procs.js';
import { PATHS, type PathName, type Rig } from './lib/rig.js';

export interface PingResult {
  requests: number;
  rate: number;
  late_sends: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
}

export interface LatencyResult {
  rate: number;
  seconds: number;
  bytes: number;
  paths: Record<PathName, PingResult>;
}

export async function latency(rig: Rig, o: { seconds: number; rate?: number }): Promise<LatencyResult> {
  const rate = o.rate ?? 1000;
  const paths = {} as Record<PathName, PingResult>;
  for (const p of PATHS) {
    const r = await loadgen<PingResult>(['pingpong', '127.0.0.1', rig.ports[p].echo, rate, o.seconds, 1024]);
    paths[p] = {
      ...r,
      rate: round(r.rate, 0),
      p50_ms: round(r.p50_ms, 3),
      p99_ms: round(r.p99_ms, 3),
      max_ms: round(r.max_ms, 3),
    };
  }
  return { rate, seconds: o.seconds, bytes: 1024, paths };
}
