import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock, quietLog, tempStore } from '../../test/helpers/core.js';
import { isTetherError } from '../errors/index.js';
import { ForwardAuthorizer } from './authorization.js';
import { TenantEvents } from './events.js';
import { ForwardRegistry, type LiveSession } from './forward-registry.js';
import { KeyedMutex } from './keyed-mutex.js';
import { generateKeyPair, parsePublicKey } from './ssh-keys.js';
import { parseQuota, TenantService } from './tenants.js';

async function setup() {
  const store = await tempStore();
  const clock = new FakeClock();
  const events = new TenantEvents();
  const seen: string[] = [];
  events.on((c) => seen.push(`${c.kind}:${c.tenant}`));
  const tenants = new TenantService(store, clock, quietLog(), events, 20);
  return { store, clock, events, seen, tenants };
}

test('parseQuota accepts whole numbers 0..3000 only', () => {
  assert.equal(parseQuota('0'), 0);
  assert.equal(parseQuota(' 25 '), 25);
  assert.equal(parseQuota(3000), 3000);
  for (const bad of ['-1', '1.5', 'abc', '', '3001', -1, 1.5, Number.NaN, null, undefined, '1e3']) {
    assert.throws(
      () => parseQuota(bad),
      (e: unknown) => isTetherError(e, 'QUOTA_INVALID'),
      String(bad),
    );
  }
});

test('add generates a key pair, stores only the public key, and refuses duplicates without force', async () => {
  const { tenants, store, seen } = await setup();
  const r = await tenants.add('acme');
  assert.match(r.privateKey ?? '', /BEGIN OPENSSH PRIVATE KEY/);
  assert.equal(r.tenant.quota, 20);
  const keys = await store.listKeys('acme');
  assert.equal(keys.length, 1);
  assert.equal(keys[0]?.fingerprint, r.fingerprint);
  assert.doesNotMatch(keys[0]!.public_key, /PRIVATE/);
  await assert.rejects(tenants.add('acme'), (e: unknown) => isTetherError(e, 'TENANT_EXISTS'));
  const again = await tenants.add('acme', { force: true });
  assert.notEqual(again.fingerprint, r.fingerprint);
  assert.equal((await store.listKeys('acme')).length, 1, 'force replaces the keys');
  assert.deepEqual(seen, ['added:acme', 'keys-replaced:acme']);
  await store.close();
});

test('bad public keys are refused and nothing is stored', async () => {
  const { tenants, store } = await setup();
  const pair = generateKeyPair();
  await assert.rejects(tenants.add('acme', { publicKey: pair.privateKey }), /PRIVATE key/);
  await assert.rejects(tenants.add('acme', { publicKey: 'garbage' }), /not a usable SSH public key/);
  await assert.rejects(tenants.add('acme', { publicKey: '' }), /the file is empty/);
  await assert.rejects(tenants.add('Bad Id'), /invalid tenant id/);
  assert.deepEqual(await store.listTenants(), []);
  const ok = await tenants.add('acme', { publicKey: pair.publicKey });
  assert.equal(ok.privateKey, undefined);
  assert.equal(ok.fingerprint, parsePublicKey(pair.publicKey).fingerprint);
  await store.close();
});

test('checkLogin: unknown tenant, disabled tenant, unknown key', async () => {
  const { tenants, store } = await setup();
  const r = await tenants.add('acme');
  assert.deepEqual(await tenants.checkLogin('acme', r.fingerprint), { ok: true, quota: 20 });
  assert.deepEqual(await tenants.checkLogin('acme', 'SHA256:other'), {
    ok: false,
    reason: 'key not registered',
  });
  assert.deepEqual(await tenants.checkLogin('nobody', r.fingerprint), {
    ok: false,
    reason: 'unknown tenant',
  });
  await tenants.changeQuota('acme', 0);
  assert.deepEqual(await tenants.checkLogin('acme', r.fingerprint), {
    ok: false,
    reason: 'tenant disabled (quota 0)',
  });
  await store.close();
});

test('enrollment: a token adds the key once, then is spent; it expires after 24 h', async () => {
  const { tenants, store, clock } = await setup();
  await tenants.add('acme');
  const { token } = await tenants.createEnrollment('acme');
  const k1 = generateKeyPair();
  assert.equal((await tenants.enroll(token, k1.publicKey)).tenant, 'acme');
  await assert.rejects(tenants.enroll(token, generateKeyPair().publicKey), /already used or expired/);
  const { token: t2 } = await tenants.createEnrollment('acme');
  clock.advance(24 * 3_600_000 + 1);
  await assert.rejects(tenants.enroll(t2, generateKeyPair().publicKey), /already used or expired/);
  assert.equal((await store.listKeys('acme')).length, 2);
  await store.close();
});

test('the quota holds under concurrent forward requests (serialised per tenant)', async () => {
  const { tenants, store, clock } = await setup();
  await tenants.add('acme', { quota: 3 });
  const registry = new ForwardRegistry(clock);
  const authorizer = new ForwardAuthorizer(store, registry, { low: 5000, high: 5100 }, clock);
  const mutex = new KeyedMutex();
  const session: LiveSession = {
    id: 's',
    tenant: 'acme',
    source: 'x',
    since: 0,
    fingerprint: 'f',
    agent: 'test',
    end() {},
  };
  const results = await Promise.all(
    Array.from({ length: 10 }, (_, i) =>
      mutex.run('acme', async () => {
        const d = await authorizer.authorizeForward('acme', `g/r${i}`, 0);
        if (d.ok)
          registry.add(
            'acme',
            `g/r${i}`,
            d.port,
            { session, connections: 0, open: () => Promise.reject(new Error('x')) },
            null,
          );
        return d;
      }),
    ),
  );
  assert.equal(results.filter((r) => r.ok).length, 3);
  const refused = results.filter((r) => !r.ok);
  assert.equal(refused.length, 7);
  assert.ok(refused.every((r) => !r.ok && r.reason === 'quota exceeded (3 of 3 in use)'));
  await store.close();
});
