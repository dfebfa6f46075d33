#!/usr/bin/env node
// Runs every *.test.ts under src/ and test/ with node's test runner (through tsx).
// Usage: node scripts/run-tests.mjs [filter…]   (a filter keeps files whose path contains it)
//
// A test FILE fails when it has not finished within TIMEOUT_MS (node 20's --test-timeout bounds
// each file), so a hung test fails within 2 minutes. A file that legitimately needs longer says so
// in its first lines, with the reason beside it:  // test-timeout: 300000 (why)
// Files are run in groups of equal timeout, one group after the other.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const filters = process.argv.slice(2);
const files = [...walk('src', []), ...walk('test', [])]
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const TIMEOUT_MS = 120_000;

/** The file's own timeout from a `// test-timeout: <ms>` line among its first 20 lines, else TIMEOUT_MS. */
function timeoutOf(file) {
  const head = readFileSync(file, 'utf8').split('\n', 20).join('\n');
  const m = /^\/\/ test-timeout: (\d+)\b/m.exec(head);
  return m ? Number(m[1]) : TIMEOUT_MS;
}

const groups = new Map();
for (const f of files) {
  const t = timeoutOf(f);
  groups.set(t, [...(groups.get(t) ?? []), f]);
}
const concurrency = process.env.TETHER_TEST_CONCURRENCY ?? String(Math.max(2, availableParallelism() + 1));
let status = 0;
for (const [timeout, group] of [...groups].sort((a, b) => b[0] - a[0])) {
  const args = [
    '--import',
    'tsx',
    '--test',
    `--test-concurrency=${concurrency}`,
    `--test-timeout=${timeout}`,
    ...(process.env.TETHER_TEST_REPORTER ? [`--test-reporter=${process.env.TETHER_TEST_REPORTER}`] : []),
    ...group,
  ];
  const r = spawnSync(process.execPath, args, {
    stdio: 'inherit',
    env: { ...process.env, TETHER_TEST: '1' },
  });
  if (r.status !== 0) status = r.status ?? 1;
}
process.exit(status);
