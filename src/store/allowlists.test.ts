import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { onPostgresToo, tempStore } from '../../test/helpers/core.js';
import type { Store } from './types.js';

const now = '2026-03-01T00:00:00.000Z';

/** Migration 0005_allow_from and the allowlist rows, the same on both stores. */
function storeContract(name: string, open: () => Promise<Store>) {
  describe(`source allowlists (${name})`, () => {
    test('upsert, list, delete when both lists are gone, removed with the tenant', async () => {
      const store = await open();
      await store.insertTenant({ id: 'acme', quota: 20, created_at: now, updated_at: now });
      await store.insertTenant({ id: 'beta', quota: 20, created_at: now, updated_at: now });
      const row = {
        tenant_id: 'acme',
        label: '',
        allow_from: '["10.0.0.0/8"]',
        tunnel_from: null,
        updated_at: now,
      };
      await store.setAllowlist(row);
      await store.setAllowlist({ ...row, label: 'g/web', allow_from: '["::1/128"]' });
      await store.setAllowlist({ ...row, tenant_id: 'beta', tunnel_from: '["192.0.2.0/24"]' });
      await store.setAllowlist({ ...row, tunnel_from: '["172.16.0.0/12"]' });
      const rows = await store.listAllowlists('acme');
      assert.deepEqual(
        rows.map((r) => [r.label, r.allow_from, r.tunnel_from]),
        [
          ['', '["10.0.0.0/8"]', '["172.16.0.0/12"]'],
          ['g/web', '["::1/128"]', null],
        ],
      );
      await store.setAllowlist({ ...row, label: 'g/web', allow_from: null });
      assert.equal((await store.listAllowlists('acme')).length, 1);
      assert.equal(await store.deleteTenant('acme'), true);
      assert.deepEqual(
        (await store.listAllowlists()).map((r) => r.tenant_id),
        ['beta'],
      );
      await store.close();
    });
  });
}

storeContract('sqlite', tempStore);

await onPostgresToo('source allowlists', storeContract);
