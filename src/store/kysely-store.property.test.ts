import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { tempDir } from '../../test/helpers/util.js';
import type { KyselyStore } from './kysely-store.js';
import { openSqliteStore } from './sqlite/index.js';
import type { LeaseRange, LeaseRow } from './types.js';

/** Bounded runs: each run opens SQLite files; every property test together stays well under 20 s. */
const RUNS = { numRuns: 15 };
const NOW = '2026-01-01T00:00:00.000Z';
const TENANTS = ['a', 'b', 'c'];

const request = fc.record({
  tenant: fc.constantFrom(...TENANTS),
  label: fc.constantFrom('g/web', 'g/db', 'h/web', 'h/ssh', 'x/1', 'x/2', 'x/3', 'y/4'),
  /** which of two connections to the same file asks (two gateways sharing a store) */
  via: fc.constantFrom(0, 1),
});

/** The invariants of the lease table: one port per (tenant, label), one owner per port, inside the range. */
function assertLeaseTable(rows: LeaseRow[], range: LeaseRange): void {
  const ports = new Map<number, string>();
  const labels = new Map<string, number>();
  for (const r of rows) {
    const owner = `${r.tenant_id}\0${r.label}`;
    assert.ok(
      r.port >= range.low && r.port <= range.high,
      `port ${r.port} outside ${range.low}-${range.high}`,
    );
    assert.equal(ports.get(r.port), undefined, `port ${r.port} has two owners`);
    assert.equal(labels.get(owner), undefined, `${owner} has two ports`);
    ports.set(r.port, owner);
    labels.set(owner, r.port);
  }
}

async function openPair(dir: string): Promise<[KyselyStore, KyselyStore]> {
  const a = await openSqliteStore(dir);
  const b = await openSqliteStore(dir);
  for (const id of TENANTS) await a.insertTenant({ id, quota: 20, created_at: NOW, updated_at: NOW });
  return [a, b];
}

describe('lease allocator (properties)', () => {
  test('concurrent requests through two connections: never two owners of a port, one port per label, stable after a restart', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(request, { minLength: 1, maxLength: 30 }),
        fc.integer({ min: 1, max: 10 }),
        async (requests, size) => {
          const dir = tempDir('tether-lease-prop-');
          const range = { low: 40_000, high: 40_000 + size - 1 };
          const stores = await openPair(dir);
          try {
            const results = await Promise.all(
              requests.map((r) => stores[r.via]!.leasePort(r.tenant, r.label, range, NOW)),
            );
            const rows = await stores[0].listLeases();
            assertLeaseTable(rows, range);
            const owners = new Set(requests.map((r) => `${r.tenant}\0${r.label}`));
            // every asker got the port the table holds for it, or nothing only when the range is full
            requests.forEach((r, i) => {
              const got = results[i];
              const row = rows.find((x) => x.tenant_id === r.tenant && x.label === r.label);
              if (got) assert.equal(got.port, row?.port, `${r.tenant} ${r.label}`);
              else assert.equal(rows.length, size, 'refused only when the range is full');
            });
            assert.equal(rows.length, Math.min(owners.size, size));
          } finally {
            await stores[0].close();
            await stores[1].close();
          }
          // a restart (fresh connections on the same file) gives everyone the same port again
          const again = await openSqliteStore(dir);
          try {
            const before = await again.listLeases();
            for (const row of before) {
              const l = await again.leasePort(row.tenant_id, row.label, range, NOW);
              assert.equal(l?.port, row.port);
            }
            assert.deepEqual(await again.listLeases(), before);
            assert.equal(await again.integrityCheck(), 'ok');
          } finally {
            await again.close();
          }
        },
      ),
      RUNS,
    );
  });

  // One connection here: a transaction (deleteTenant) on one connection and a write on another
  // in the same thread would wait on each other until busy_timeout (a gateway has one store).
  test('tenant removals racing lease requests leave a consistent table (no port with two owners)', async () => {
    const step = fc.oneof(
      { weight: 4, arbitrary: request.map((r) => ({ op: 'lease' as const, ...r })) },
      {
        weight: 1,
        arbitrary: fc.constantFrom(...TENANTS).map((t) => ({ op: 'remove' as const, tenant: t })),
      },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(step, { maxLength: 8 }), { minLength: 1, maxLength: 5 }),
        async (batches) => {
          const dir = tempDir('tether-lease-prop-');
          const range = { low: 41_000, high: 41_004 };
          const stores = await openPair(dir);
          try {
            for (const batch of batches) {
              await Promise.all(
                batch.map(async (s) => {
                  if (s.op === 'lease') {
                    // a tenant removed under a request: the foreign key refuses the lease (the
                    // gateway answers that forward with a refusal; removal ends the session anyway)
                    return stores[0].leasePort(s.tenant, s.label, range, NOW).catch((e: Error) => {
                      assert.match(e.message, /FOREIGN KEY constraint failed/);
                    });
                  }
                  await stores[0].deleteTenant(s.tenant);
                  await stores[0].insertTenant({ id: s.tenant, quota: 20, created_at: NOW, updated_at: NOW });
                }),
              );
              assertLeaseTable(await stores[1].listLeases(), range);
            }
          } finally {
            await stores[0].close();
            await stores[1].close();
          }
        },
      ),
      RUNS,
    );
  });
});
