import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { BIN, freePortRange, freePorts, run, tempDir } from '../helpers/util.js';
import { linePattern, runnableBlocks } from './markdown.js';

/**
 * Runs docs/getting-started.md: its ```sh test blocks, in order, in one bash, against the built
 * binary, with the documented ports swapped for free ones; each ```text output block must
 * appear (line by line, in order) in what its block printed.
 */
describe('docs/getting-started.md runs as written', () => {
  const dir = tempDir('tether-docs-start-');
  const env = { ...process.env };
  delete env.TETHER_DATA_DIR;
  delete env.TETHER_ADMIN_URL;
  delete env.TETHER_ADMIN_TOKEN;
  delete env.TETHER_STATE_DIR;
  delete env.TETHER_CONNECT_CONFIG;
  const binDir = join(dir, 'bin');
  mkdirSync(binDir);
  writeFileSync(join(binDir, 'tether'), `#!/bin/sh\nexec "${process.execPath}" "${BIN}" "$@"\n`);
  chmodSync(join(binDir, 'tether'), 0o755);
  env.PATH = `${binDir}:${env.PATH}`;
  const work = join(dir, 'work');
  mkdirSync(work);

  after(async () => {
    if (existsSync(join(work, 'connect.yaml')))
      await run('tether', ['connector', 'stop'], { env, cwd: work });
  });

  test('every block runs and prints what the page shows', { timeout: 170_000 }, async () => {
    const blocks = runnableBlocks('docs/getting-started.md');
    assert.ok(blocks.length >= 8, `only ${blocks.length} runnable blocks`);
    const lease = await freePortRange(10);
    // Distinct ports: four separate freePort() calls once gave the tunnel and the sample web
    // server the same one.
    const [tunnel, admin, proxy, web] = await freePorts(4);
    const ports = new Map<string, string>([
      ['2222', String(tunnel)],
      ['7070', String(admin)],
      ['3128', String(proxy)],
      ['8080', String(web)],
      ['2200', String(lease.low)],
      ['2209', String(lease.high)],
    ]);
    const swap = (text: string) => text.replace(/\b(2222|7070|3128|8080|2200|2209)\b/g, (p) => ports.get(p)!);
    const script = [
      'set -euo pipefail',
      ...blocks.flatMap((b, i) => [`echo "@@block ${i}@@"`, swap(b.code)]),
      'echo "@@end@@"',
    ].join('\n');
    const child = spawn('bash', ['-c', script], { cwd: work, env, detached: true });
    let output = '';
    child.stdout.on('data', (c: Buffer) => {
      output += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      output += c.toString();
    });
    // Generous: on a loaded 2-core machine every `tether` call is a Node start-up.
    const timer = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 150_000);
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    clearTimeout(timer);
    // A background program (ssh -f) may hold the output pipes a little longer.
    await Promise.race([new Promise((r) => child.on('close', r)), new Promise((r) => setTimeout(r, 2_000))]);
    try {
      process.kill(-child.pid!, 'SIGTERM');
    } catch {
      // the group is gone
    }
    const sections = output.split(/^@@block (\d+)@@$/m);
    const printed = new Map<number, string>();
    for (let i = 1; i < sections.length; i += 2) printed.set(Number(sections[i]), sections[i + 1] ?? '');
    const last = Math.max(...printed.keys());
    assert.equal(
      code,
      0,
      `the block at line ${blocks[last]?.line} failed (exit ${code}):\n${printed.get(last)}\n--- script ---\n${script}`,
    );
    assert.match(output, /@@end@@/);
    blocks.forEach((b, i) => {
      if (!b.expected) return;
      const lines = (printed.get(i) ?? '').split('\n');
      let at = 0;
      for (const want of swap(b.expected).split('\n')) {
        if (!want.trim()) continue;
        const re = linePattern(want);
        const found = lines.findIndex((l, k) => k >= at && re.test(l));
        assert.ok(
          found >= 0,
          `block at line ${b.line}: expected a line like ${JSON.stringify(want)} in:\n${printed.get(i)}`,
        );
        at = found + 1;
      }
    });
  });
});
