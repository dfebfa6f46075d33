/**
 * 6. Slow consumer: a caller on the gateway side downloads N bytes (1 GiB in the full run) from
 * a fast source behind the tunnel while reading at 10 MB/s. Backpressure must hold the data
 * back at the source: the gateway's and the connector's RSS may not grow with N.
 */
import { loadgen, round, rss, sleep } from './lib/procs.js';
import type { Rig } from './lib/rig.js';

export interface SlowConsumerResult {
  bytes: number;
  rate_limit: number;
  seconds: number;
  achieved_rate: number;
  gateway_rss_before_mib: number;
  gateway_rss_peak_mib: number;
  gateway_growth_mib: number;
  connector_rss_before_mib: number;
  connector_rss_peak_mib: number;
  connector_growth_mib: number;
}

const MiB = 1024 * 1024;

export async function slowConsumer(
  rig: Rig,
  o: { bytes: number; rate?: number },
): Promise<SlowConsumerResult> {
  const rate = o.rate ?? 10_000_000;
  const g0 = rss(rig.gateway.pid);
  const c0 = rss(rig.connector.pid);
  let gPeak = g0;
  let cPeak = c0;
  let done = false;
  const sampler = (async () => {
    while (!done) {
      gPeak = Math.max(gPeak, rss(rig.gateway.pid));
      cPeak = Math.max(cPeak, rss(rig.connector.pid));
      await sleep(200);
    }
  })();
  const r = await loadgen<{ bytes: number; seconds: number; rate: number }>([
    'slowread',
    '127.0.0.1',
    rig.ports.tether.source,
    o.bytes,
    rate,
  ]);
  done = true;
  await sampler;
  if (r.bytes !== o.bytes) throw new Error(`slow consumer received ${r.bytes} of ${o.bytes} bytes`);
  return {
    bytes: o.bytes,
    rate_limit: rate,
    seconds: round(r.seconds, 1),
    achieved_rate: round(r.rate, 0),
    gateway_rss_before_mib: round(g0 / MiB, 1),
    gateway_rss_peak_mib: round(gPeak / MiB, 1),
    gateway_growth_mib: round((gPeak - g0) / MiB, 1),
    connector_rss_before_mib: round(c0 / MiB, 1),
    connector_rss_peak_mib: round(cPeak / MiB, 1),
    connector_growth_mib: round((cPeak - c0) / MiB, 1),
  };
}
