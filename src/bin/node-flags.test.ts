import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { firstLine, flagsOfShebang, nodeFlagsOf } from './node-flags.js';

const ROOT = join(import.meta.dirname, '../..');
const ENTRY = join(ROOT, 'src/bin/tether.ts');

test('the tether binary starts node with --initial-old-space-size=64, and npm start with the same flags', () => {
  const flags = nodeFlagsOf(ENTRY);
  assert.deepEqual(flags, ['--initial-old-space-size=64']);
  const start = (
    JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  ).scripts.start;
  assert.match(start ?? '', new RegExp(`node ${flags.join(' ')} dist/bin/tether\\.js gateway$`));
});

test('the shebang line runs: env -S hands node its flags', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-shebang-'));
  try {
    const script = join(dir, 'probe.mjs');
    writeFileSync(script, `${firstLine(ENTRY)}\nconsole.log(JSON.stringify(process.execArgv));\n`);
    chmodSync(script, 0o755);
    const out = execFileSync(script, {
      encoding: 'utf8',
      env: { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}` },
    });
    assert.deepEqual(JSON.parse(out), nodeFlagsOf(ENTRY));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('flagsOfShebang: a plain node shebang has no flags; anything else is refused by name', () => {
  assert.deepEqual(flagsOfShebang('#!/usr/bin/env node'), []);
  assert.deepEqual(flagsOfShebang('#!/usr/bin/env -S node --a=1 --b'), ['--a=1', '--b']);
  assert.throws(() => flagsOfShebang('#!/bin/sh'), /not a node shebang line: "#!\/bin\/sh"/);
  assert.throws(() => flagsOfShebang('import x from "y";'), /not a node shebang line/);
});
