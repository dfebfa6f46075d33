import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { onPostgresToo, tempStore } from '../../test/helpers/core.js';
import { tempDir } from '../../test/helpers/util.js';
import { openSqliteStore } from './sqlite/index.js';
import type { LimitsRow, Store } from './types.js';

const now = '2026-03-01T00:00:00.000Z';

function limits(tenant: string, label: string, patch: Partial<LimitsRow>): LimitsRow {
  return {
    tenant_id: tenant,
    label,
    balance: null,
    bandwidth_up: null,
    bandwidth_down: null,
    max_connections: null,
    traffic_limit: null,
    traffic_period: null,
    updated_at: now,
    ...patch,
  };
}

/** The same checks against both stores: PostgreSQL answers bigints as strings. */
function storeContract(name: string, open: () => Promise<Store>) {
  describe(`limits and traffic counters (${name})`, () => {
    test('limits: upsert, list as numbers, delete when empty, removed with the tenant', async () => {
      const store = await open();
      await store.insertTenant({ id: 'acme', quota: 20, created_at: now, updated_at: now });
      await store.insertTenant({ id: 'beta', quota: 20, created_at: now, updated_at: now });
      const big = 9_000_000_000_000_000; // 9 PB: beyond 32 bits, within 2^53
      await store.setLimits(
        limits('acme', '', {
          balance: 'least-connections',
          bandwidth_up: 1_000_000,
          traffic_limit: big,
          traffic_period: 'month',
        }),
      );
      await store.setLimits(limits('acme', 'grp/web', { max_connections: 5 }));
      await store.setLimits(limits('beta', '', { bandwidth_down: 500 }));
      const rows = await store.listLimits('acme');
      assert.equal(rows.length, 2);
      assert.equal(rows[0]!.label, '');
      assert.equal(rows[0]!.traffic_limit, big);
      assert.equal(typeof rows[0]!.bandwidth_up, 'number');
      assert.equal(rows[0]!.bandwidth_down, null);
      assert.equal(rows[1]!.max_connections, 5);
      await store.setLimits(limits('acme', '', { bandwidth_up: 2_000_000 }));
      assert.equal((await store.listLimits('acme'))[0]!.bandwidth_up, 2_000_000);
      assert.equal((await store.listLimits('acme'))[0]!.balance, null, 'the row is replaced as a whole');
      await store.setLimits(limits('acme', 'grp/web', {}));
      assert.deepEqual(
        (await store.listLimits('acme')).map((r) => r.label),
        [''],
        'a row without limits is deleted',
      );
      assert.equal(await store.deleteTenant('acme'), true);
      assert.deepEqual(
        (await store.listLimits()).map((r) => r.tenant_id),
        ['beta'],
      );
      await store.close();
    });

    test('traffic: adds up per day, sums from a day on, pruned, dropped for unknown tenants', async () => {
      const store = await open();
      await store.insertTenant({ id: 'acme', quota: 20, created_at: now, updated_at: now });
      const five = 5_000_000_000;
      await store.addTraffic([
        { tenant_id: 'acme', label: 'grp/web', day: '2026-02-27', bytes_in: 1, bytes_out: 2 },
        { tenant_id: 'acme', label: 'grp/web', day: '2026-03-01', bytes_in: five, bytes_out: 10 },
        { tenant_id: 'acme', label: 'grp/web', day: '2026-03-01', bytes_in: 5, bytes_out: 10 },
        { tenant_id: 'acme', label: 'grp/db', day: '2026-03-02', bytes_in: 7, bytes_out: 0 },
        { tenant_id: 'ghost', label: 'g/r', day: '2026-03-01', bytes_in: 7, bytes_out: 7 },
      ]);
      await store.addTraffic([
        { tenant_id: 'acme', label: 'grp/web', day: '2026-03-01', bytes_in: 1, bytes_out: 1 },
      ]);
      assert.deepEqual(await store.trafficSince('2026-03-01'), [
        { tenant_id: 'acme', label: 'grp/db', bytes_in: 7, bytes_out: 0 },
        { tenant_id: 'acme', label: 'grp/web', bytes_in: five + 6, bytes_out: 21 },
      ]);
      assert.deepEqual(
        (await store.trafficSince('2026-01-01', 'acme')).find((r) => r.label === 'grp/web'),
        { tenant_id: 'acme', label: 'grp/web', bytes_in: five + 7, bytes_out: 23 },
      );
      assert.deepEqual(await store.trafficSince('2026-01-01', 'ghost'), []);
      assert.equal(await store.pruneTraffic('2026-03-01'), 1);
      assert.equal(await store.deleteTenant('acme'), true);
      assert.deepEqual(await store.trafficSince('2000-01-01'), []);
      await store.close();
    });
  });
}

storeContract('sqlite', tempStore);

test('limits and counters survive reopening the SQLite file', async () => {
  const dir = tempDir();
  let store = await openSqliteStore(dir);
  await store.insertTenant({ id: 'acme', quota: 20, created_at: now, updated_at: now });
  await store.setLimits(limits('acme', '', { max_connections: 3 }));
  await store.addTraffic([
    { tenant_id: 'acme', label: 'g/r', day: '2026-03-01', bytes_in: 10, bytes_out: 20 },
  ]);
  await store.close();
  store = await openSqliteStore(dir);
  assert.equal((await store.listLimits('acme'))[0]!.max_connections, 3);
  assert.equal((await store.trafficSince('2026-03-01'))[0]!.bytes_out, 20);
  await store.close();
});

await onPostgresToo('limits and traffic counters', storeContract);
