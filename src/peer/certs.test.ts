import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isTetherError } from '../errors/index.js';
import { generateCa, generateLeaf, writeCa, writeLeaf } from './certs.js';

test('a leaf is signed by its CA, names its SANs and serves both TLS roles', async () => {
  const ca = await generateCa();
  const leaf = await generateLeaf({
    dnsNames: ['localhost', 'server1:9090'],
    ipAddresses: ['127.0.0.1', '::1'],
    caCert: ca.cert,
    caKey: ca.key,
  });
  const caX = new X509Certificate(ca.cert);
  const leafX = new X509Certificate(leaf.cert);
  assert.equal(caX.ca, true);
  assert.equal(leafX.ca, false);
  assert.ok(leafX.checkIssued(caX));
  assert.ok(leafX.verify(caX.publicKey));
  assert.equal(
    leafX.subjectAltName,
    'DNS:localhost, DNS:server1:9090, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
  );
  assert.deepEqual(leafX.keyUsage, ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
  assert.equal(leafX.checkIP('127.0.0.1'), '127.0.0.1');
  assert.match(leaf.key, /^-----BEGIN PRIVATE KEY-----/);
});

test('leaf requests with bad input are refused with the flag named', async () => {
  const ca = await generateCa();
  const other = await generateCa();
  const attempt = async (req: Partial<Parameters<typeof generateLeaf>[0]>) => {
    try {
      await generateLeaf({ dnsNames: [], ipAddresses: [], caCert: ca.cert, caKey: ca.key, ...req });
    } catch (e) {
      assert.ok(isTetherError(e));
      return e.message;
    }
    assert.fail('expected an error');
  };
  assert.match(await attempt({}), /at least one --dns-name or --ip-address/);
  assert.match(
    await attempt({ ipAddresses: ['300.1.1.1'] }),
    /--ip-address "300.1.1.1" is not an IP address/,
  );
  assert.match(await attempt({ dnsNames: ['a'], caKey: 'junk' }), /--root-key is not a PEM private key/);
  assert.match(await attempt({ dnsNames: ['a'], caCert: 'junk' }), /--root-ca is not a PEM certificate/);
  assert.match(
    await attempt({ dnsNames: ['a'], caKey: other.key }),
    /--root-key does not belong to --root-ca/,
  );
});

test('writeCa and writeLeaf write the expected files, keys 0600, and refuse to overwrite', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tether-certs-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const ca = await writeCa(join(dir, 'ca'));
  assert.equal(ca.cert, join(dir, 'ca', 'root.cert'));
  assert.equal((await stat(ca.key)).mode & 0o777, 0o600);
  const leaf = await writeLeaf(join(dir, 's1'), {
    dnsNames: ['localhost'],
    ipAddresses: [],
    rootCaPath: ca.cert,
    rootKeyPath: ca.key,
  });
  assert.equal((await stat(leaf.key)).mode & 0o777, 0o600);
  assert.equal((await stat(leaf.cert)).mode & 0o777, 0o644);
  await assert.rejects(writeCa(join(dir, 'ca')), /root.cert already exists \(use --force to replace it\)/);
  // --force replaces, and a pre-existing key file with loose permissions ends up 0600.
  await writeFile(join(dir, 'ca', 'root.key'), 'old', { mode: 0o644 });
  const again = await writeCa(join(dir, 'ca'), { force: true });
  assert.equal((await stat(again.key)).mode & 0o777, 0o600);
  assert.match(await readFile(again.key, 'utf8'), /BEGIN PRIVATE KEY/);
  await assert.rejects(
    writeLeaf(join(dir, 's2'), {
      dnsNames: ['x'],
      ipAddresses: [],
      rootCaPath: join(dir, 'nope'),
      rootKeyPath: ca.key,
    }),
    /cannot read --root-ca .*nope/,
  );
});
