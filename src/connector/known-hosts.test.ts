import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { generateKeyPair, parsePublicKey } from '../core/ssh-keys.js';
import { checkHostKey, keyTypeOf, knownHostsName } from './known-hosts.js';

describe('gateway host key: pinning and trust on first use', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-kh-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const a = parsePublicKey(generateKeyPair().publicKey);
  const b = parsePublicKey(generateKeyPair().publicKey);

  test('names and key types follow OpenSSH', () => {
    assert.equal(knownHostsName('gw.example.com', 22), 'gw.example.com');
    assert.equal(knownHostsName('127.0.0.1', 2222), '[127.0.0.1]:2222');
    assert.equal(keyTypeOf(a.blob), 'ssh-ed25519');
  });

  test('first use learns the key into known_hosts (0600); later uses accept it', () => {
    const file = join(dir, 'tofu', 'known_hosts');
    const opts = { host: '127.0.0.1', port: 2222, knownHostsFile: file };
    assert.deepEqual(checkHostKey(opts, a.blob), { ok: true, fingerprint: a.fingerprint, learned: true });
    assert.equal(readFileSync(file, 'utf8'), `[127.0.0.1]:2222 ssh-ed25519 ${a.blob.toString('base64')}\n`);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(checkHostKey(opts, a.blob), { ok: true, fingerprint: a.fingerprint, learned: false });
    // another gateway address learns its own entry
    assert.equal(checkHostKey({ ...opts, port: 2223 }, b.blob).ok, true);
  });

  test('a changed key is refused with both fingerprints and the known_hosts line', () => {
    const file = join(dir, 'tofu', 'known_hosts');
    const v = checkHostKey({ host: '127.0.0.1', port: 2222, knownHostsFile: file }, b.blob);
    assert.equal(v.ok, false);
    if (v.ok) return;
    assert.equal(v.error.code, 'GATEWAY_HOST_KEY_MISMATCH');
    assert.ok(v.error.message.includes(`expected ${a.fingerprint}`), v.error.message);
    assert.ok(v.error.message.includes(`presented ${b.fingerprint}`), v.error.message);
    assert.match(v.error.message, /known_hosts line 1/);
    assert.match(v.error.message, /remove the line for \[127\.0\.0\.1\]:2222/);
  });

  test('a pinned fingerprint accepts only that key and never writes known_hosts', () => {
    const file = join(dir, 'pinned', 'known_hosts');
    const opts = {
      host: 'gw',
      port: 2222,
      pinned: a.fingerprint,
      pinnedSource: '/etc/tether/connect.yaml',
      knownHostsFile: file,
    };
    assert.deepEqual(checkHostKey(opts, a.blob), { ok: true, fingerprint: a.fingerprint, learned: false });
    const v = checkHostKey(opts, b.blob);
    assert.equal(v.ok, false);
    if (v.ok) return;
    assert.equal(
      v.error.message,
      `gateway host key mismatch for gw:2222: expected ${a.fingerprint} (gateway_fingerprint in /etc/tether/connect.yaml), ` +
        `but the gateway presented ${b.fingerprint}. Refusing to connect: the connection may be intercepted, ` +
        `or the gateway's key was replaced. If the change is expected, set gateway_fingerprint to the new value.`,
    );
    assert.throws(() => statSync(file));
  });

  test('OpenSSH reads the file we write', (t) => {
    const probe = spawnSync(
      'ssh-keygen',
      ['-F', '[127.0.0.1]:2222', '-f', join(dir, 'tofu', 'known_hosts')],
      {
        encoding: 'utf8',
      },
    );
    if (probe.error) return t.skip('ssh-keygen is not installed');
    assert.equal(probe.status, 0);
    assert.match(probe.stdout, /\[127\.0\.0\.1\]:2222 ssh-ed25519/);
  });
});
