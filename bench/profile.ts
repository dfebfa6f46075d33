/**
 * Where the time goes: runs the gateway and the connector with --cpu-prof while iperf3 (or the
 * connection loop) goes through the tunnel, then prints the top functions by self time.
 *
 *   npm run build && npx tsx bench/profile.ts [--mode bulk|bulk-up|conns|pingpong] [--seconds 8]
 *
 * The .cpuprofile files land in bench/results/ (not committed); open them in Chrome DevTools.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadgen, ROOT, stopAll } from './lib/procs.js';
import { startRig } from './lib/rig.js';
import { iperf } from './throughput.js';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount: number;
}

export function summarize(file: string, top = 25): string {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as { nodes: Node[]; samples: number[] };
  const total = prof.samples.length;
  const self = new Map<string, number>();
  for (const n of prof.nodes) {
    const f = n.callFrame;
    const where = f.url
      ? `${f.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/')}:${f.lineNumber + 1}`
      : '';
    const key = `${f.functionName || '(anonymous)'} ${where}`;
    self.set(key, (self.get(key) ?? 0) + n.hitCount);
  }
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k, v]) => `${((v / total) * 100).toFixed(1).padStart(5)}%  ${k}`)
    .join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { mode: { type: 'string', default: 'bulk' }, seconds: { type: 'string', default: '8' } },
  });
  const dir = join(ROOT, 'bench/results');
  const t0 = Date.now();
  const rig = await startRig({
    gatewayFlags: ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-name', `gateway-${t0}.cpuprofile`],
    connectorFlags: ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-name', `connector-${t0}.cpuprofile`],
  });
  const s = Number(values.seconds);
  try {
    if (values.mode === 'bulk' || values.mode === 'bulk-up') {
      const g = await iperf(rig.ports.tether.iperf, 1, s, { reverse: values.mode === 'bulk' });
      process.stdout.write(`tether ${g.toFixed(2)} Gbit/s\n`);
    } else if (values.mode === 'conns') {
      process.stdout.write(
        `${JSON.stringify(await loadgen(['connrate', `127.0.0.1:${rig.ports.tether.echo}`, s, 16]))}\n`,
      );
    } else {
      process.stdout.write(
        `${JSON.stringify(await loadgen(['pingpong', '127.0.0.1', rig.ports.tether.echo, 1000, s, 1024]))}\n`,
      );
    }
  } finally {
    await rig.stop();
    await stopAll();
  }
  for (const f of readdirSync(dir).filter((f) => f.endsWith(`-${t0}.cpuprofile`))) {
    const path = join(dir, f);
    if (statSync(path).size === 0) continue;
    process.stdout.write(`\n== ${f}\n${summarize(path)}\n`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
