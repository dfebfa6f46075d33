import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import ssh2 from 'ssh2';
import { fingerprintMatches, fingerprintsOf, normalizeFingerprint } from './fingerprint.js';

test('fingerprints match what ssh-keygen -l prints, in both forms', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-fp-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const kp = ssh2.utils.generateKeyPairSync('ed25519');
  const file = join(dir, 'key.pub');
  writeFileSync(file, `${kp.public}\n`);
  const sha = execFileSync('ssh-keygen', ['-l', '-f', file]).toString().split(' ')[1]!;
  const md5 = execFileSync('ssh-keygen', ['-l', '-E', 'md5', '-f', file]).toString().split(' ')[1]!;
  const parsed = ssh2.utils.parseKey(kp.public);
  assert.ok(!(parsed instanceof Error) && !Array.isArray(parsed));
  const blob = parsed.getPublicSSH();
  assert.deepEqual(fingerprintsOf(blob), { sha256: sha, md5 });
  assert.ok(fingerprintMatches(sha, blob));
  assert.ok(fingerprintMatches(`${sha}=`, blob), 'padded base64 is accepted');
  assert.ok(fingerprintMatches(md5, blob));
  assert.ok(fingerprintMatches(md5.slice(4).toUpperCase(), blob), 'bare upper-case MD5 hex is accepted');

  const other = ssh2.utils.parseKey(ssh2.utils.generateKeyPairSync('ed25519').public);
  assert.ok(!(other instanceof Error) && !Array.isArray(other));
  assert.equal(fingerprintMatches(sha, other.getPublicSSH()), false);
  assert.equal(fingerprintMatches(md5, other.getPublicSSH()), false);
  assert.equal(fingerprintMatches('garbage', blob), false);
  assert.equal(fingerprintMatches(sha.toLowerCase(), blob), false, 'SHA256 base64 is case-sensitive');
});

test('normalizeFingerprint', () => {
  assert.equal(normalizeFingerprint('SHA256:abc'), undefined);
  assert.equal(
    normalizeFingerprint('MD5:AA:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99'),
    'MD5:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99',
  );
  assert.equal(
    normalizeFingerprint('aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99'),
    'MD5:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99',
  );
  assert.equal(normalizeFingerprint('aa:bb:cc'), undefined);
});
