import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { FakeClock, tempStore } from '../../test/helpers/core.js';
import { TenantEvents } from '../core/events.js';
import { ForwardRegistry } from '../core/forward-registry.js';
import { GroupKeyService } from '../core/group-keys.js';
import { TenantService } from '../core/tenants.js';
import { silentLogger } from '../log/index.js';
import { AdminServer } from './server.js';

const TOKEN = 'test-admin-token-0123456789';

/**
 * A primary under `workers` hears of a burst of grants a little later than the connector does
 * (a worker reports at most every 20 ms). Its tenant views first let the workers send what they
 * hold back (`settle`), so a read made after a grant shows it.
 */
test('a tenant view waits for settle() and shows what it brought in', async () => {
  const store = await tempStore();
  const clock = new FakeClock();
  const log = silentLogger();
  const events = new TenantEvents();
  const tenants = new TenantService(store, clock, log, events, 20);
  const registry = new ForwardRegistry(clock);
  let settled = 0;
  const server = new AdminServer({
    token: TOKEN,
    store,
    tenants,
    groupKeys: new GroupKeyService(store, clock, log, events),
    registry,
    // the held-back report arrives while the view waits (as a worker's answer would bring it)
    settle: async () => {
      await new Promise((r) => setImmediate(r));
      settled++;
      registry.setRemote(
        [
          {
            tenant: 'acme',
            label: 'g/web',
            port: lease!.port,
            node: 'worker-2',
            address: '127.0.0.1',
            connectors: 1,
            sibling: true,
          },
        ],
        'workers',
      );
    },
    log,
    nodeId: null,
    version: 'test',
  });
  after(async () => {
    await server.close();
    await store.close();
  });
  await tenants.add('acme');
  const lease = await store.leasePort(
    'acme',
    'g/web',
    { low: 2200, high: 2210 },
    new Date(clock.now()).toISOString(),
  );
  assert.ok(lease);
  const addr = await server.listen('127.0.0.1', 0);
  const get = async (path: string) => {
    const res = await fetch(`http://127.0.0.1:${addr.port}${path}`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    return (await res.json()) as Record<string, unknown>;
  };
  const one = (await get('/v1/tenants/acme')) as {
    tenant: { forwards: Array<{ label: string; node: string }> };
  };
  assert.equal(settled, 1);
  assert.deepEqual(
    one.tenant.forwards.map((f) => [f.label, f.node]),
    [['g/web', 'worker-2']],
  );
  const all = (await get('/v1/tenants')) as { tenants: Array<{ forwards: unknown[] }> };
  assert.equal(settled, 2);
  assert.equal(all.tenants[0]!.forwards.length, 1);
  const repos = (await get('/v1/tenants/acme/repositories')) as { groups: Array<{ group: string }> };
  assert.equal(settled, 3);
  assert.ok(JSON.stringify(repos).includes('web'), JSON.stringify(repos));
});
