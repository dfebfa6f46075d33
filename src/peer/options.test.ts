import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isTetherError } from '../errors/index.js';
import { writeCa, writeLeaf } from './certs.js';
import { resolvePeerOptions } from './options.js';

async function startupError(input: Parameters<typeof resolvePeerOptions>[0]): Promise<string> {
  try {
    await resolvePeerOptions(input);
  } catch (e) {
    assert.ok(isTetherError(e));
    assert.equal(e.status, 400);
    return e.message;
  }
  assert.fail('expected a startup error');
}

test('defaults are the connector ports on every interface, plain mode', async () => {
  const o = await resolvePeerOptions({});
  assert.deepEqual(o.tunnelBind, { host: '', port: 9090 });
  assert.deepEqual(o.httpBind, { host: '', port: 9091 });
  assert.equal(o.logLevel, 'info');
  assert.equal(o.tls, undefined);
  assert.ok(Object.isFrozen(o));
});

test('bad binds and log levels are startup errors', async () => {
  assert.match(await startupError({ tunnelBind: 'nope' }), /^--tunnel-bind "nope" has no port/);
  assert.match(await startupError({ httpBind: '127.0.0.1:99999' }), /^--http-bind .*out of range/);
  assert.match(
    await startupError({ logLevel: 'loud' }),
    /--log-level "loud" is not one of trace, debug, info, warn, error/,
  );
});

test('certificate flags go together', async () => {
  assert.equal(
    await startupError({ rootCertPath: 'a' }),
    '--root-cert-path, --server-cert-path and --server-key-path go together (all three for mTLS, or none): missing --server-cert-path, --server-key-path',
  );
  assert.match(await startupError({ serverCertPath: 'a', serverKeyPath: 'b' }), /missing --root-cert-path$/);
});

test('unreadable, mismatched or foreign certificate files are startup errors', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tether-opts-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const ca = await writeCa(join(dir, 'ca'));
  const other = await writeCa(join(dir, 'other'));
  const leafFor = (d: string, root: { cert: string; key: string }) =>
    writeLeaf(join(dir, d), {
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
      rootCaPath: root.cert,
      rootKeyPath: root.key,
    });
  const s1 = await leafFor('s1', ca);
  const s2 = await leafFor('s2', ca);
  const foreign = await leafFor('s3', other);
  const flags = (over: Record<string, string>) => ({
    rootCertPath: ca.cert,
    serverCertPath: s1.cert,
    serverKeyPath: s1.key,
    ...over,
  });

  const ok = await resolvePeerOptions(flags({}));
  assert.ok(ok.tls);
  assert.match(ok.tls.subject, /CN=localhost/);

  assert.equal(
    await startupError(flags({ rootCertPath: join(dir, 'missing.cert') })),
    `cannot read --root-cert-path ${join(dir, 'missing.cert')}: no such file`,
  );
  assert.match(
    await startupError(flags({ serverKeyPath: dir })),
    /cannot read --server-key-path .*: is a directory/,
  );
  await writeFile(join(dir, 'junk.pem'), 'hello');
  assert.match(
    await startupError(flags({ serverCertPath: join(dir, 'junk.pem') })),
    /holds no PEM certificate/,
  );
  assert.match(
    await startupError(flags({ serverKeyPath: join(dir, 'junk.pem') })),
    /holds no PEM private key/,
  );
  assert.match(
    await startupError(flags({ serverKeyPath: s2.key })),
    /the key does not belong to the certificate/,
  );
  assert.match(
    await startupError(flags({ serverCertPath: foreign.cert, serverKeyPath: foreign.key })),
    /--server-cert-path .* is not signed by --root-cert-path/,
  );
});
