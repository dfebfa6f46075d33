import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { type ErrorCode, isTetherError } from '../errors/index.js';
import { deleteKeyPair, readPrivateKey, writeNewKeyPair } from './key-file.js';

describe('key file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-key-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('writeNewKeyPair: private 0600, public 0644, readable back with its fingerprint', () => {
    const path = join(dir, 'k1');
    const w = writeNewKeyPair(path, 'test@host');
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(statSync(`${path}.pub`).mode & 0o777, 0o644);
    const k = readPrivateKey(path);
    assert.equal(k.fingerprint, w.fingerprint);
    assert.match(k.publicKey, /^ssh-ed25519 AAAA/);
    assert.match(readFileSync(`${path}.pub`, 'utf8'), /^ssh-ed25519 AAAA\S+ test@host\n$/);
    assert.deepEqual(deleteKeyPair(path), [path, `${path}.pub`]);
  });

  test('refusals: missing, readable by others, garbage, a public key', () => {
    const check = (path: string, code: ErrorCode, re: RegExp) =>
      assert.throws(
        () => readPrivateKey(path),
        (e: unknown) => isTetherError(e, code) && e.status === 400 && re.test(e.message),
      );
    check(join(dir, 'none'), 'SSH_KEY_MISSING', /file not found/);
    const open = join(dir, 'open');
    writeNewKeyPair(open, '');
    chmodSync(open, 0o640);
    check(open, 'SSH_KEY_UNPROTECTED', /Permissions 0640 for '.*open' are too open/);
    const junk = join(dir, 'junk');
    writeFileSync(junk, 'hello', { mode: 0o600 });
    check(junk, 'SSH_KEY_INVALID', /not an SSH private key/);
    const pub = join(dir, 'pubonly');
    writeFileSync(pub, readFileSync(`${open}.pub`), { mode: 0o600 });
    check(pub, 'SSH_KEY_INVALID', /this is a public key/);
  });
});
