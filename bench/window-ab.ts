/**
 * Loopback bulk transfer with the adaptive windows on and off (`max_window: 2MiB` on both ends
 * = ssh2's fixed window), alternating, to see what the adaptation costs or gains where the round
 * trip is short.   npx tsx bench/window-ab.ts [--rounds 4] [--seconds 3] [--max 32MiB]
 */
import { parseArgs } from 'node:util';
import { startConnector, startGateway, startIperf } from './lib/paths.js';
import { cpuSplitOf, load, median, round, stopAll } from './lib/procs.js';
import { iperf } from './throughput.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '4' },
    seconds: { type: 'string', default: '3' },
    max: { type: 'string', default: '32MiB' },
  },
});
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
try {
  const dest = await startIperf();
  const variants = {
    fixed: '2MiB',
    adaptive: values.max!,
  } as const;
  const rigs: Record<string, { port: number; pids: number[] }> = {};
  for (const [name, w] of Object.entries(variants)) {
    const gw = await startGateway({ config: { tunnel: { listen: '127.0.0.1:0', max_window: w } } });
    const key = await gw.addTenant('ab');
    const c = await startConnector(gw, 'ab', key, { 'ab/iperf': dest.port }, { config: { max_window: w } });
    rigs[name] = { port: c.ports.get('ab/iperf')!, pids: [gw.pid, c.pid] };
    await iperf(rigs[name].port, 1, 1);
  }
  const out: Record<string, { gbps: number[]; cpu: number[] }> = {};
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? Object.keys(rigs) : Object.keys(rigs).reverse();
    for (const name of order) {
      const { port, pids } = rigs[name]!;
      const c0 = cpuSplitOf(pids);
      const g = await iperf(port, 1, seconds);
      const c1 = cpuSplitOf(pids);
      out[name] ??= { gbps: [], cpu: [] };
      out[name].gbps.push(round(g));
      out[name].cpu.push(round((c1.user + c1.sys - c0.user - c0.sys) / ((g * seconds) / 8)));
    }
  }
  for (const [name, v] of Object.entries(out)) {
    console.log(
      `${name.padEnd(9)} Gbit/s ${v.gbps.join(' ')} (median ${round(median(v.gbps))}); CPU s/GB ${v.cpu.join(' ')} (median ${round(median(v.cpu))})`,
    );
  }
  console.log(
    `load average ${load()
      .map((x) => round(x, 1))
      .join(' ')}`,
  );
} finally {
  await stopAll();
}
