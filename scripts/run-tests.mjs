#!/usr/bin/env node
// Runs every *.test.ts under src/ and test/ with node's test runner (through tsx).
// Usage: node scripts/run-tests.mjs [filter…]   (a filter keeps files whose path contains it)
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
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
const concurrency = process.env.TETHER_TEST_CONCURRENCY ?? String(Math.max(2, availableParallelism() + 1));
const args = [
  '--import',
  'tsx',
  '--test',
  `--test-concurrency=${concurrency}`,
  '--test-timeout=420000',
  ...(process.env.TETHER_TEST_REPORTER ? [`--test-reporter=${process.env.TETHER_TEST_REPORTER}`] : []),
  ...files,
];
const r = spawnSync(process.execPath, args, { stdio: 'inherit', env: { ...process.env, TETHER_TEST: '1' } });
process.exit(r.status ?? 1);
