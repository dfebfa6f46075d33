import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { FakeClock, tempStore } from '../../test/helpers/core.js';
import { ForwardAuthorizer } from './authorization.js';
import { type ForwardEndpoint, ForwardRegistry, type LiveSession } from './forward-registry.js';
import { type LeasePolicy, LeaseService } from './leases.js';
import { RefusalLog } from './refusals.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { log, lines };
}

async function setup(policy: Partial<LeasePolicy> = {}, tenants: Record<string, number> = { acme: 2 }) {
  const clock = new FakeClock();
  const store = await tempStore();
  const now = new Date(clock.now()).toISOString();
  for (const [id, quota] of Object.entries(tenants))
    await store.insertTenant({ id, quota, created_at: now, updated_at: now });
  const registry = new ForwardRegistry(clock);
  const { log, lines } = capture();
  const leases = new LeaseService(
    store,
    registry,
    clock,
    { range: { low: 5000, high: 5009 }, leaseTtl: 30 * DAY, unusedLeaseTtl: HOUR, leaseMargin: 1, ...policy },
    log,
    new RefusalLog(log, clock),
  );
  leases.watch();
  const authorizer = new ForwardAuthorizer(store, registry, leases.policy.range, clock, { leases });
  const endpoint = (tenant: string): ForwardEndpoint => {
    const session: LiveSession = {
      id: tenant,
      tenant,
      source: 'x',
      since: 0,
      fingerprint: 'f',
      agent: 't',
      end() {},
    };
    return { session, connections: 0, open: () => Promise.reject(new Error('not in this test')) };
  };
  /** Forward (like a tcpip-forward the gateway grants), returning the port and a cancel. */
  const forward = async (tenant: string, label: string) => {
    const d = await authorizer.authorizeForward(tenant, label, 0);
    if (!d.ok) return d;
    const e = endpoint(tenant);
    registry.add(tenant, label, d.port, e, null);
    await settle();
    return {
      ...d,
      cancel: async () => {
        registry.remove(tenant, label, e);
        await settle();
      },
    };
  };
  const held = async (tenant: string) => (await store.listLeases(tenant)).map((l) => l.label).sort();
  return { clock, store, registry, leases, authorizer, forward, held, lines };
}

/** Lets the fire-and-forget lease writes reach the store. */
const settle = () => new Promise((r) => setTimeout(r, 5));

test('forward-and-cancel with fresh labels holds at most quota + margin leases; another tenant still gets a port', async () => {
  const { forward, held, lines, store, clock } = await setup({}, { acme: 2, other: 2 });
  // 40 fresh labels through a range of 10 ports.
  for (let i = 0; i < 40; i++) {
    const f = await forward('acme', `g/r${i}`);
    assert.equal(f.ok, true, `forward ${i}: ${JSON.stringify(f)}`);
    if (f.ok) await f.cancel();
    clock.advance(1000);
    assert.ok((await held('acme')).length <= 3, `after ${i}: ${(await held('acme')).length} leases`);
  }
  assert.deepEqual(await held('acme'), ['g/r37', 'g/r38', 'g/r39'], 'the newest stay, the oldest went');
  const b = await forward('other', 'g/web');
  assert.equal(b.ok, true, JSON.stringify(b));
  const evictions = lines.filter((l) => l.event === 'bound.refused' && l.reason === 'leases_per_tenant');
  assert.ok(evictions.length >= 1, 'evictions are logged under leases_per_tenant');
  assert.match(String(evictions[0]?.msg), /released to make room for g\/r3: at most 3 leases per tenant/);
  assert.equal((await store.listLeases()).length, 4);
  await store.close();
});

test('a live lease is never released; with every lease live the quota refuses', async () => {
  const { forward, held, store } = await setup({ leaseMargin: 0 }, { acme: 2 });
  const a = await forward('acme', 'g/a');
  const b = await forward('acme', 'g/b');
  assert.equal(a.ok && b.ok, true);
  const c = await forward('acme', 'g/c');
  assert.deepEqual(c, { ok: false, code: 'TENANT_QUOTA_EXCEEDED', reason: 'quota exceeded (2 of 2 in use)' });
  assert.deepEqual(await held('acme'), ['g/a', 'g/b']);
  if (b.ok) await b.cancel();
  const c2 = await forward('acme', 'g/c');
  assert.equal(c2.ok, true);
  assert.deepEqual(await held('acme'), ['g/a', 'g/c'], 'the idle lease made room, the live one stayed');
  await store.close();
});

test('a lease that carried a connection outlives never-used ones when room is needed, and keeps its port', async () => {
  const { forward, held, registry, store } = await setup({}, { acme: 1 });
  const used = await forward('acme', 'g/used');
  assert.ok(used.ok);
  registry.emit('connection', { type: 'opened', forward: registry.get('acme', 'g/used') });
  await settle();
  await used.cancel();
  for (let i = 0; i < 5; i++) {
    const f = await forward('acme', `g/junk${i}`);
    if (f.ok) await f.cancel();
  }
  assert.deepEqual(await held('acme'), ['g/junk4', 'g/used']);
  const again = await forward('acme', 'g/used');
  assert.ok(again.ok);
  assert.equal(again.port, used.port, 'same port on re-forward');
  await store.close();
});

test('TTLs: a never-used lease goes after unused_lease_ttl, a used one after lease_ttl, a live one never', async () => {
  const { forward, held, registry, leases, clock, store } = await setup({ leaseMargin: 5 }, { acme: 5 });
  const unused = await forward('acme', 'g/unused');
  const used = await forward('acme', 'g/used');
  const live = await forward('acme', 'g/live');
  const longUp = await forward('acme', 'g/long');
  assert.ok(unused.ok && used.ok && live.ok && longUp.ok);
  registry.emit('connection', { type: 'opened', forward: registry.get('acme', 'g/used') });
  await unused.cancel();
  await used.cancel();
  clock.advance(HOUR + 1);
  await longUp.cancel(); // up for over an hour without a connection: established
  assert.equal(await leases.sweep(), 1);
  assert.deepEqual(await held('acme'), ['g/live', 'g/long', 'g/used']);
  clock.advance(29 * DAY);
  assert.equal(await leases.sweep(), 0, 'used leases keep their 30 days');
  clock.advance(DAY + 1);
  assert.equal(await leases.sweep(), 2);
  assert.deepEqual(await held('acme'), ['g/live'], 'the live forward keeps its lease');
  clock.advance(365 * DAY);
  await leases.sweep();
  assert.deepEqual(await held('acme'), ['g/live']);
  await store.close();
});

test('a forward up only briefly does not establish its lease', async () => {
  const { forward, held, leases, clock, store } = await setup();
  const f = await forward('acme', 'g/brief');
  assert.ok(f.ok);
  clock.advance(60_000);
  await f.cancel();
  clock.advance(HOUR - 1);
  assert.equal(await leases.sweep(), 0, 'the short TTL counts from the last use');
  clock.advance(2);
  assert.equal(await leases.sweep(), 1);
  assert.deepEqual(await held('acme'), []);
  await store.close();
});

test('the sweep trims a tenant over its bound (a lowered quota) to quota + margin, idle leases first', async () => {
  const { forward, held, leases, store, clock } = await setup({ leaseMargin: 1 }, { acme: 5 });
  const live = await forward('acme', 'g/live');
  assert.ok(live.ok);
  for (let i = 0; i < 4; i++) {
    const f = await forward('acme', `g/idle${i}`);
    if (f.ok) await f.cancel();
    clock.advance(1000);
  }
  assert.equal((await held('acme')).length, 5);
  await store.setQuota('acme', 1, new Date(clock.now()).toISOString());
  assert.equal(await leases.sweep(), 3);
  assert.deepEqual(await held('acme'), ['g/idle3', 'g/live']);
  await store.close();
});

test('the sweep removes group keys of groups without a lease once a tenant holds more than quota + margin of them', async () => {
  const { forward, leases, store, clock } = await setup({ leaseMargin: 1 }, { acme: 1 });
  const keep = await forward('acme', 'keep/web');
  assert.ok(keep.ok);
  for (let i = 0; i < 6; i++) {
    await store.ensureGroupKey({
      tenant_id: 'acme',
      group_name: `g${i}`,
      key: `k${i}`,
      created_at: new Date(clock.now()).toISOString(),
    });
    clock.advance(1000);
  }
  await store.ensureGroupKey({
    tenant_id: 'acme',
    group_name: 'keep',
    key: 'kk',
    created_at: new Date(clock.now()).toISOString(),
  });
  await leases.sweep();
  const left = (await store.listGroupKeys('acme')).map((g) => g.group_name).sort();
  assert.deepEqual(
    left,
    ['g5', 'keep'],
    'the leased group keeps its key; the newest orphan stays within the bound',
  );
  await store.close();
});
