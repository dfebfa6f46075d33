import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { CONCURRENT_MARKING_OFF, steadyDataPathGc } from './gc-tuning.js';

test('steadyDataPathGc turns concurrent marking off, unless node was given its own choice', () => {
  const set: string[] = [];
  const record = (f: string) => set.push(f);
  assert.equal(steadyDataPathGc({ execArgv: [], nodeOptions: '', set: record }), true);
  assert.deepEqual(set, [CONCURRENT_MARKING_OFF]);
  for (const [execArgv, nodeOptions] of [
    [['--concurrent-marking'], ''],
    [['--no-concurrent-marking'], ''],
    [['--concurrent_marking=true'], ''],
    [[], '--max-old-space-size=512 --concurrent-marking'],
  ] as const) {
    assert.equal(
      steadyDataPathGc({ execArgv, nodeOptions, set: record }),
      false,
      `${execArgv} ${nodeOptions}`,
    );
  }
  assert.equal(set.length, 1);
  // other flags do not count as a choice
  assert.equal(
    steadyDataPathGc({ execArgv: ['--max-semi-space-size=16'], nodeOptions: '--trace-gc', set: record }),
    true,
  );
});

test('a process that turned concurrent marking off at start still runs full mark-compacts', () => {
  const mod = pathToFileURL(new URL('./gc-tuning.ts', import.meta.url).pathname).href;
  const script = `
    import { steadyDataPathGc } from ${JSON.stringify(mod)};
    if (!steadyDataPathGc()) throw new Error('flag not set');
    const keep = [];
    const t0 = Date.now();
    let rounds = 0;
    while (Date.now() - t0 < 1500) {
      for (let i = 0; i < 1000; i++) keep.push({ i, b: Buffer.allocUnsafe(i % 7 === 0 ? 65536 : 64) });
      if (keep.length > 200000) keep.splice(0, 150000);
      if (++rounds % 100 === 0) await new Promise((r) => setImmediate(r));
    }
    console.log('survived', rounds);
  `;
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--trace-gc', '--input-type=module', '-e', script],
    {
      encoding: 'utf8',
      env: { ...process.env, NODE_OPTIONS: '' },
      timeout: 60_000,
    },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /survived \d+/);
  assert.match(r.stdout, /Mark-Compact/, 'the churn must have caused at least one full GC');
});
