import assert from 'node:assert/strict';
import { test } from 'node:test';
import { tempStore } from '../../test/helpers/core.js';
import { tempDir } from '../../test/helpers/util.js';
import { openSqliteStore } from './sqlite/index.js';

const now = '2026-01-01T00:00:00.000Z';

test('leases: one port per (tenant, label), lowest free first, never two owners under concurrency', async () => {
  const store = await tempStore();
  for (const id of ['a', 'b', 'c'])
    await store.insertTenant({ id, quota: 20, created_at: now, updated_at: now });
  const range = { low: 3000, high: 3029 };
  const jobs = [];
  for (const t of ['a', 'b', 'c'])
    for (let i = 0; i < 10; i++) jobs.push(store.leasePort(t, `g/r${i}`, range, now));
  const leases = await Promise.all(jobs);
  const ports = leases.map((l) => l?.port);
  assert.equal(new Set(ports).size, 30, 'thirty distinct ports');
  assert.ok(ports.every((p) => p !== undefined && p >= 3000 && p <= 3029));
  assert.equal(await store.leasePort('a', 'g/extra', range, now), undefined, 'range exhausted');
  const again = await store.leasePort('b', 'g/r3', range, now);
  assert.equal(again?.port, leases[13]?.port, 'the same lease again');
  await store.close();
});

test('leases survive a restart of the store and are freed with their tenant', async () => {
  const dir = tempDir();
  let store = await openSqliteStore(dir);
  await store.insertTenant({ id: 'acme', quota: 20, created_at: now, updated_at: now });
  const first = await store.leasePort('acme', 'g/web', { low: 4000, high: 4010 }, now);
  await store.close();
  store = await openSqliteStore(dir);
  const second = await store.leasePort('acme', 'g/web', { low: 4000, high: 4010 }, now);
  assert.equal(second?.port, first?.port);
  assert.equal(await store.deleteTenant('acme'), true);
  assert.deepEqual(await store.listLeases(), []);
  assert.equal(await store.integrityCheck(), 'ok');
  await store.close();
});

test('expireLeases releases stale leases but never live ones', async () => {
  const store = await tempStore();
  await store.insertTenant({ id: 'acme', quota: 20, created_at: now, updated_at: now });
  await store.leasePort('acme', 'g/old', { low: 4000, high: 4010 }, '2025-01-01T00:00:00.000Z');
  await store.leasePort('acme', 'g/live', { low: 4000, high: 4010 }, '2025-01-01T00:00:00.000Z');
  await store.leasePort('acme', 'g/new', { low: 4000, high: 4010 }, now);
  const cut = { before: '2025-06-01T00:00:00.000Z', unusedBefore: '2025-06-01T00:00:00.000Z' };
  const gone = await store.expireLeases(cut, [{ tenant_id: 'acme', label: 'g/live' }]);
  assert.deepEqual(
    gone.map((l) => l.label),
    ['g/old'],
  );
  assert.deepEqual((await store.listLeases('acme')).map((l) => l.label).sort(), ['g/live', 'g/new']);
  await store.close();
});

test('expireLeases keeps an established lease for the long TTL and a never-used one for the short TTL', async () => {
  const store = await tempStore();
  await store.insertTenant({ id: 'acme', quota: 20, created_at: now, updated_at: now });
  const range = { low: 4000, high: 4010 };
  await store.leasePort('acme', 'g/used', range, '2025-01-01T00:00:00.000Z');
  await store.establishLease('acme', 'g/used', '2025-01-01T00:10:00.000Z');
  await store.leasePort('acme', 'g/unused', range, '2025-01-01T00:00:00.000Z');
  // Short cutoff after both, long cutoff before both: only the never-used one goes.
  const gone = await store.expireLeases(
    { before: '2024-12-01T00:00:00.000Z', unusedBefore: '2025-01-01T01:00:00.000Z' },
    [],
  );
  assert.deepEqual(
    gone.map((l) => l.label),
    ['g/unused'],
  );
  assert.equal((await store.getLease('acme', 'g/used'))?.established_at, '2025-01-01T00:10:00.000Z');
  assert.equal(await store.deleteLease('acme', 'g/used'), true);
  assert.equal(await store.deleteLease('acme', 'g/used'), false);
  await store.close();
});

test('withTenantLock runs in one transaction: an error rolls back what it wrote', async () => {
  const store = await tempStore();
  await store.insertTenant({ id: 'acme', quota: 20, created_at: now, updated_at: now });
  await assert.rejects(
    store.withTenantLock('acme', async (tx) => {
      await tx.leasePort('acme', 'g/x', { low: 4000, high: 4010 }, now);
      throw new Error('boom');
    }),
    /boom/,
  );
  assert.equal(await store.getLease('acme', 'g/x'), undefined);
  await store.close();
});

test('enrollment tokens are single use and expire', async () => {
  const store = await tempStore();
  await store.insertTenant({ id: 'acme', quota: 20, created_at: now, updated_at: now });
  await store.insertEnrollment({
    token_hash: 'h1',
    tenant_id: 'acme',
    expires_at: '2026-01-02T00:00:00.000Z',
    used_at: null,
  });
  await store.insertEnrollment({
    token_hash: 'h2',
    tenant_id: 'acme',
    expires_at: '2025-12-31T00:00:00.000Z',
    used_at: null,
  });
  assert.equal(await store.consumeEnrollment('h1', now), 'acme');
  assert.equal(await store.consumeEnrollment('h1', now), undefined, 'second use fails');
  assert.equal(await store.consumeEnrollment('h2', now), undefined, 'expired');
  assert.equal(await store.consumeEnrollment('nope', now), undefined);
  assert.equal(await store.pruneEnrollments(now), 1, 'the expired token is deleted, the unexpired one kept');
  assert.equal(await store.pruneEnrollments('2026-01-03T00:00:00.000Z'), 1);
  await store.close();
});
