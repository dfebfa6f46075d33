import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { Command } from 'commander';
import { buildProgram } from '../../src/cli/program.js';
import { run } from '../helpers/util.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const BIN = join(ROOT, 'dist/bin/tether.js');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** Every command of the tree as its argv path, e.g. ['tenants', 'add']. */
function commands(cmd: Command, prefix: string[] = []): Array<{ path: string[]; cmd: Command }> {
  const out: Array<{ path: string[]; cmd: Command }> = [];
  for (const c of cmd.commands) {
    const path = [...prefix, c.name()];
    out.push({ path, cmd: c }, ...commands(c, path));
  }
  return out;
}

const all = commands(buildProgram());

/** All user docs: README.md and docs/*.md. */
const docsText = [
  readFileSync(join(ROOT, 'README.md'), 'utf8'),
  ...readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => readFileSync(join(ROOT, 'docs', f), 'utf8')),
].join('\n');

describe('tether --help and --version', () => {
  test('--version prints the package.json version', async () => {
    const r = await run(process.execPath, [BIN, '--version']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout.trim(), VERSION);
  });

  test('every command and option has a description', () => {
    assert.ok(all.length >= 20, `only ${all.length} commands`);
    for (const { path, cmd } of all) {
      const name = `tether ${path.join(' ')}`;
      assert.ok(cmd.description().trim().length > 10, `${name}: no description`);
      for (const o of cmd.options)
        assert.ok(o.description.trim().length > 3, `${name} ${o.flags}: no description`);
      for (const a of cmd.registeredArguments)
        assert.ok(a.description === '' || a.description.trim().length > 0, `${name} <${a.name()}>`);
    }
  });

  test('`tether --help`, `tether <group> --help` and `tether <group> <cmd> --help` print usage, description and options', async () => {
    const top = await run(process.execPath, [BIN, '--help']);
    assert.equal(top.code, 0);
    for (const { path } of all.filter((c) => c.path.length === 1))
      assert.match(top.stdout, new RegExp(`^  ${path[0]}\\b`, 'm'), `tether --help lacks ${path[0]}`);
    for (const { path, cmd } of all) {
      const r = await run(process.execPath, [BIN, ...path, '--help']);
      const name = `tether ${path.join(' ')} --help`;
      assert.equal(r.code, 0, `${name}: exit ${r.code} ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^Usage: tether ${path.join(' ')}`, 'm'), name);
      const firstWords = cmd.description().split(/\s+/).slice(0, 3).join(' ');
      assert.ok(r.stdout.replace(/\s+/g, ' ').includes(firstWords), `${name} lacks its description`);
      for (const o of cmd.options)
        assert.ok(r.stdout.includes(o.long ?? o.flags), `${name} lacks ${o.flags}`);
    }
  });

  test('every command is described in the docs (README.md or docs/*.md)', () => {
    for (const { path } of all) {
      if (path.at(-1) === 'help') continue;
      const phrase = `tether ${path.join(' ')}`;
      assert.ok(docsText.includes(phrase), `no doc mentions "${phrase}"`);
    }
  });
});
