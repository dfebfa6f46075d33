import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { FakeClock, tempStore } from '../../test/helpers/core.js';
import { ForwardAuthorizer } from './authorization.js';
import { type ForwardEndpoint, ForwardRegistry, type LiveSession } from './forward-registry.js';
import { KeyedMutex } from './keyed-mutex.js';

/** Bounded runs: each run opens a SQLite store; every property test together stays well under 20 s. */
const RUNS = { numRuns: 20 };
const NOW = '2026-01-01T00:00:00.000Z';
const RANGE = { low: 42_000, high: 42_011 };

function endpoint(tenant: string, id: string): ForwardEndpoint {
  const session: LiveSession = {
    id,
    tenant,
    source: 'test',
    since: 0,
    fingerprint: 'fp',
    agent: 'test',
    end() {},
  };
  return { session, connections: 0, open: () => Promise.reject(new Error('not in this test')) };
}

const step = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant('forward' as const),
      tenant: fc.constantFrom('a', 'b'),
      session: fc.constantFrom('s1', 's2'),
      label: fc.constantFrom('g/1', 'g/2', 'g/3', 'g/4', 'h/1', 'h/2'),
      explicit: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('cancel' as const),
      tenant: fc.constantFrom('a', 'b'),
      session: fc.constantFrom('s1', 's2'),
      label: fc.constantFrom('g/1', 'g/2', 'g/3', 'g/4', 'h/1', 'h/2'),
    }),
  },
);

describe('forward quota under concurrent requests (properties)', () => {
  test('never more forwards than the quota, never two tenants on one port, decisions per tenant in order', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(step, { minLength: 1, maxLength: 40 }),
        fc.record({ a: fc.integer({ min: 0, max: 4 }), b: fc.integer({ min: 1, max: 4 }) }),
        async (steps, quotas) => {
          const store = await tempStore();
          const clock = new FakeClock();
          const registry = new ForwardRegistry(clock);
          const authorizer = new ForwardAuthorizer(store, registry, RANGE, clock);
          const mutex = new KeyedMutex();
          for (const [id, quota] of Object.entries(quotas)) {
            await store.insertTenant({ id, quota, created_at: NOW, updated_at: NOW });
          }
          /** (tenant, session) → label → endpoint, as the tunnel server keeps them per session. */
          const sessions = new Map<string, Map<string, ForwardEndpoint>>();
          const invariant = () => {
            const byPort = new Map<number, string>();
            for (const [t, q] of Object.entries(quotas)) {
              assert.ok(
                registry.countLabels(t) <= q,
                `tenant ${t}: ${registry.countLabels(t)} forwards, quota ${q}`,
              );
            }
            for (const f of registry.list()) {
              const other = byPort.get(f.port);
              assert.ok(
                other === undefined || other === f.tenant,
                `port ${f.port}: ${other} and ${f.tenant}`,
              );
              byPort.set(f.port, f.tenant);
            }
          };
          try {
            await Promise.all(
              steps.map((s) =>
                // exactly what TunnelServer does for tcpip-forward / cancel-tcpip-forward
                mutex.run(s.tenant, async () => {
                  const key = `${s.tenant}/${s.session}`;
                  const mine = sessions.get(key) ?? new Map<string, ForwardEndpoint>();
                  sessions.set(key, mine);
                  if (s.op === 'cancel') {
                    const e = mine.get(s.label);
                    if (e) {
                      mine.delete(s.label);
                      registry.remove(s.tenant, s.label, e);
                    }
                    return invariant();
                  }
                  if (mine.has(s.label)) return;
                  const lease = await store.getLease(s.tenant, s.label);
                  const port = s.explicit && lease ? lease.port : 0;
                  const d = await authorizer.authorizeForward(s.tenant, s.label, port);
                  if (d.ok) {
                    const e = endpoint(s.tenant, key);
                    mine.set(s.label, e);
                    registry.add(s.tenant, s.label, d.port, e, null);
                  } else {
                    assert.ok(
                      ['TENANT_QUOTA_EXCEEDED', 'TENANT_DISABLED', 'PORT_RANGE_EXHAUSTED'].includes(d.code),
                      d.code,
                    );
                    if (d.code === 'TENANT_DISABLED') assert.equal(quotas[s.tenant as 'a' | 'b'], 0);
                    if (d.code === 'TENANT_QUOTA_EXCEEDED') {
                      assert.equal(registry.countLabels(s.tenant), quotas[s.tenant as 'a' | 'b']);
                      assert.equal(
                        registry.get(s.tenant, s.label),
                        undefined,
                        'a live label is never refused for quota',
                      );
                    }
                  }
                  invariant();
                }),
              ),
            );
            invariant();
            // leases are stable: every live forward sits on its stored lease
            for (const f of registry.list())
              assert.equal((await store.getLease(f.tenant, f.label))?.port, f.port);
          } finally {
            await store.close();
          }
        },
      ),
      RUNS,
    );
  });

  test('a port that is not the tenant lease is refused, whoever holds it', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 65535 }),
        fc.constantFrom('g/1', 'h/2'),
        async (port, label) => {
          const store = await tempStore();
          const clock = new FakeClock();
          const authorizer = new ForwardAuthorizer(store, new ForwardRegistry(clock), RANGE, clock);
          try {
            for (const id of ['a', 'b'])
              await store.insertTenant({ id, quota: 5, created_at: NOW, updated_at: NOW });
            const theirs = await authorizer.authorizeForward('b', label, 0);
            assert.ok(theirs.ok);
            const mine = await authorizer.authorizeForward('a', label, port);
            assert.equal(mine.ok, false);
            if (!mine.ok) assert.equal(mine.code, 'PORT_NOT_LEASED');
            const steal = await authorizer.authorizeForward('a', label, theirs.port);
            assert.ok(!steal.ok && steal.code === 'PORT_NOT_LEASED', "b's lease port is not a's");
          } finally {
            await store.close();
          }
        },
      ),
      { numRuns: 10 },
    );
  });
});
