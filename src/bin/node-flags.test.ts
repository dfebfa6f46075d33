import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { firstLine, parseShebang, shebangOf } from './node-flags.js';

const ROOT = join(import.meta.dirname, '../..');
const ENTRY = join(ROOT, 'src/bin/tether.ts');

const MALLOC_ENV = { MALLOC_TRIM_THRESHOLD_: '16777216', MALLOC_MMAP_THRESHOLD_: '1048576' };

test('the tether binary starts node with --initial-old-space-size=64 and glibc malloc settings, and npm start with the same', () => {
  const flags = shebangOf(ENTRY).flags;
  assert.deepEqual(flags, ['--initial-old-space-size=64']);
  assert.deepEqual(shebangOf(ENTRY).env, MALLOC_ENV);
  const start = (
    JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  ).scripts.start;
  const env = Object.entries(shebangOf(ENTRY).env)
    .map(([k, v]) => `${k}=${v} `)
    .join('');
  assert.match(start ?? '', new RegExp(`&& ${env}node ${flags.join(' ')} dist/bin/tether\\.js gateway$`));
});

test('the shebang line runs: env -S hands node its flags and its environment, replacing an inherited value', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-shebang-'));
  try {
    const script = join(dir, 'probe.mjs');
    writeFileSync(
      script,
      `${firstLine(ENTRY)}\nconst e = process.env;\n` +
        'console.log(JSON.stringify([process.execArgv, e.MALLOC_TRIM_THRESHOLD_, e.MALLOC_MMAP_THRESHOLD_, e.KEPT]));\n',
    );
    chmodSync(script, 0o755);
    const out = execFileSync(script, {
      encoding: 'utf8',
      env: {
        ...process.env,
        PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`,
        MALLOC_TRIM_THRESHOLD_: '1',
        KEPT: 'yes',
      },
    });
    assert.deepEqual(JSON.parse(out), [
      shebangOf(ENTRY).flags,
      MALLOC_ENV.MALLOC_TRIM_THRESHOLD_,
      MALLOC_ENV.MALLOC_MMAP_THRESHOLD_,
      'yes',
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('parseShebang: a plain node shebang has no flags; anything else is refused by name', () => {
  assert.deepEqual(parseShebang('#!/usr/bin/env node').flags, []);
  assert.deepEqual(parseShebang('#!/usr/bin/env -S node --a=1 --b').flags, ['--a=1', '--b']);
  assert.throws(() => parseShebang('#!/bin/sh'), /not a node shebang line: "#!\/bin\/sh"/);
  assert.throws(() => parseShebang('import x from "y";'), /not a node shebang line/);
});

test('parseShebang: variables before node are its environment; a malformed assignment is refused', () => {
  assert.deepEqual(parseShebang('#!/usr/bin/env -S A_B=1 C= node --x=2'), {
    env: { A_B: '1', C: '' },
    flags: ['--x=2'],
  });
  assert.deepEqual(parseShebang('#!/usr/bin/env -S node'), { env: {}, flags: [] });
  for (const bad of [
    '#!/usr/bin/env -S a=1 node', // lower case: not a variable this parser sets
    '#!/usr/bin/env -S A=1=2 node',
    '#!/usr/bin/env -S node A=1',
    '#!/usr/bin/env -S A=1 nodejs',
  ]) {
    assert.throws(() => parseShebang(bad), /not a node shebang line/, bad);
  }
});
