import assert from 'node:assert/strict';
import { test } from 'node:test';
import ssh2 from 'ssh2';
import { fingerprintOf, generateKeyPair, md5FingerprintOf, parsePublicKey } from './ssh-keys.js';

test('every generated key pair parses and signs (ssh2 sometimes writes unreadable ed25519 keys)', () => {
  for (let i = 0; i < 600; i++) {
    const kp = generateKeyPair('t');
    const priv = ssh2.utils.parseKey(kp.privateKey);
    assert.ok(!(priv instanceof Error) && !Array.isArray(priv), `pair ${i} parses`);
    assert.equal(parsePublicKey(kp.publicKey).type, 'ssh-ed25519');
  }
});

test('fingerprints are formatted like ssh-keygen -l', () => {
  const blob = Buffer.from('abc');
  assert.match(fingerprintOf(blob), /^SHA256:[A-Za-z0-9+/]{43}$/);
  assert.match(md5FingerprintOf(blob), /^MD5:([0-9a-f]{2}:){15}[0-9a-f]{2}$/);
});
