/**
 * A/B: two builds of tether (e.g. before and after an optimisation) side by side in one run,
 * alternating, so that the machine's load hits both alike. Each build gets its own gateway and
 * connector forwarding to the same destinations; reports the median Gbit/s, tunnel CPU seconds
 * per GB, connections per second and ping-pong p99 of each. `--tests` picks among bulk (one stream
 * downloading, iperf3 -R), bulkup (one stream uploading), bulk8 (8 streams down), conns and ping.
 *
 *   npx tsx bench/ab.ts --a /path/to/old/dist/bin/tether.js [--b dist/bin/tether.js] [--rounds 4] [--seconds 3]
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import {
  type Connector,
  type Gateway,
  startConnector,
  startGateway,
  startIperf,
  startServers,
} from './lib/paths.js';
import { BIN, connRate, cpuOf, load, loadgen, median, round, stopAll } from './lib/procs.js';
import { iperf } from './throughput.js';

const { values } = parseArgs({
  options: {
    a: { type: 'string' },
    b: { type: 'string', default: BIN },
    rounds: { type: 'string', default: '4' },
    seconds: { type: 'string', default: '3' },
    tests: { type: 'string', default: 'bulk,bulk8,conns,ping' },
  },
});

interface Side {
  name: string;
  gw: Gateway;
  conn: Connector;
  gbps: number[];
  gbps8: number[];
  gbpsUp: number[];
  cpuPerGbUp: number[];
  cpuPerGb: number[];
  conns: number[];
  cpuPerConn: number[];
  p99: number[];
}

async function main(): Promise<void> {
  if (!values.a) throw new Error('--a <old tether.js> is required');
  const s = Number(values.seconds);
  const tests = new Set(values.tests!.split(','));
  const servers = await startServers();
  const ip = await startIperf();
  const dest = { 'ab/iperf': ip.port, 'ab/echo': servers.echo };
  const sides: Side[] = [];
  for (const [name, bin] of [
    ['A', values.a],
    ['B', values.b!],
  ] as const) {
    const gw = await startGateway({ bin: resolve(bin) });
    const key = await gw.addTenant('ab');
    const conn = await startConnector(gw, 'ab', key, dest, { bin: resolve(bin) });
    sides.push({
      name,
      gw,
      conn,
      gbps: [],
      gbps8: [],
      gbpsUp: [],
      cpuPerGbUp: [],
      cpuPerGb: [],
      conns: [],
      cpuPerConn: [],
      p99: [],
    });
  }
  process.stdout.write(
    `load average ${load()
      .map((x) => round(x, 1))
      .join(' ')}\n`,
  );
  for (let r = 0; r < Number(values.rounds); r++) {
    const order = r % 2 === 0 ? sides : [...sides].reverse();
    for (const side of order) {
      const pids = [side.gw.pid, side.conn.pid];
      /** One stream (down: iperf3 -R, else up): its Gbit/s and the tunnel's CPU seconds per GB. */
      const oneStream = async (down: boolean, gbps: number[], cpuPerGb: number[]) => {
        const c0 = cpuOf(pids);
        const g = await iperf(side.conn.ports.get('ab/iperf')!, 1, s, { reverse: down });
        gbps.push(g);
        cpuPerGb.push((cpuOf(pids) - c0) / ((g * s) / 8));
      };
      if (tests.has('bulk')) await oneStream(true, side.gbps, side.cpuPerGb);
      if (tests.has('bulkup')) await oneStream(false, side.gbpsUp, side.cpuPerGbUp);
      if (tests.has('bulk8')) side.gbps8.push(await iperf(side.conn.ports.get('ab/iperf')!, 8, s));
      if (tests.has('conns')) {
        const c = await connRate([`127.0.0.1:${side.conn.ports.get('ab/echo')}`], s, 16, pids);
        side.conns.push(c.per_s);
        side.cpuPerConn.push(c.cpuMsPerConn);
      }
      if (tests.has('ping')) {
        const p = await loadgen<{ p99_ms: number }>([
          'pingpong',
          '127.0.0.1',
          side.conn.ports.get('ab/echo')!,
          1000,
          s,
          1024,
        ]);
        side.p99.push(p.p99_ms);
      }
    }
  }
  for (const side of sides) {
    process.stdout.write(
      `${side.name}: bulk ${round(median(side.gbps))} Gbit/s (${side.gbps.map((x) => round(x)).join(' ')}), ` +
        `8 streams ${round(median(side.gbps8))}, CPU ${round(median(side.cpuPerGb))} s/GB, ` +
        `up ${round(median(side.gbpsUp))} Gbit/s (${side.gbpsUp.map((x) => round(x)).join(' ')}) at ${round(median(side.cpuPerGbUp))} s/GB, ` +
        `conns ${round(median(side.conns), 0)}/s (CPU ${round(median(side.cpuPerConn), 2)} ms each), p99 ${round(median(side.p99), 2)} ms\n`,
    );
  }
  process.stdout.write(
    `load average ${load()
      .map((x) => round(x, 1))
      .join(' ')}\n`,
  );
}

try {
  await main();
} finally {
  await stopAll();
}
