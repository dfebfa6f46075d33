import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadOrCreateHostKey } from './host-key.js';

const here = import.meta.dirname;

test('processes starting at once on a fresh data dir all take the same host key, written once, whole and 0600', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-hostkey-'));
  try {
    const path = join(dir, 'ssh_proxy_host_key');
    const go = join(dir, 'go');
    // each process loads the module, says so, then waits for the others: all then race for the file
    const script = `
      const { existsSync } = await import('node:fs');
      const { loadOrCreateHostKey } = await import(${JSON.stringify(join(here, 'host-key.ts'))});
      process.stdout.write('ready\\n');
      while (!existsSync(${JSON.stringify(go)})) {}
      const k = loadOrCreateHostKey({ file: undefined, generatedPath: ${JSON.stringify(path)}, configKey: 'k', comment: 'c' });
      process.stdout.write(k.fingerprint);
    `;
    let ready = 0;
    let release: () => void = () => {};
    const allReady = new Promise<void>((r) => {
      release = r;
    });
    const run = () =>
      new Promise<string>((resolve, reject) => {
        const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        let err = '';
        p.stdout.on('data', (c) => {
          out += c;
          if (out.startsWith('ready\n') && !out.slice(6).length && ++ready === N) release();
        });
        p.stderr.on('data', (c) => {
          err += c;
        });
        p.on('exit', (code) =>
          code === 0 ? resolve(out.slice(6)) : reject(new Error(`exit ${code}: ${err}`)),
        );
      });
    const N = 8;
    const runs = Array.from({ length: N }, run);
    await allReady;
    writeFileSync(go, '');
    const prints = await Promise.all(runs);
    rmSync(go);
    assert.equal(new Set(prints).size, 1, `one key for all: ${prints.join(' ')}`);
    assert.match(prints[0]!, /^SHA256:/);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(dir), ['ssh_proxy_host_key'], 'no temporary file left behind');
    // and it is the key read back later
    const again = loadOrCreateHostKey({ file: undefined, generatedPath: path, configKey: 'k', comment: 'c' });
    assert.equal(again.fingerprint, prints[0]);
    assert.match(readFileSync(path, 'utf8'), /BEGIN OPENSSH PRIVATE KEY/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
