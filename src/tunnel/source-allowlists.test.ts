import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock, quietLog, tempStore } from '../../test/helpers/core.js';
import { TenantEvents } from '../core/events.js';
import { SourceAllowlists } from './source-allowlists.js';

const now = '2026-01-01T00:00:00.000Z';

async function setup() {
  const store = await tempStore();
  for (const id of ['acme', 'beta'])
    await store.insertTenant({ id, quota: 20, created_at: now, updated_at: now });
  const events = new TenantEvents();
  const lists = new SourceAllowlists(store, new FakeClock(), quietLog(), events);
  await lists.start();
  return { store, events, lists };
}

test('allow_from: tenant and repository lists both bound a caller; others are untouched', async () => {
  const { store, lists } = await setup();
  assert.equal(lists.callerRefusal('acme', 'g/web', '198.51.100.1'), undefined, 'no list: anyone');
  await lists.change('acme', '', { allowFrom: ['203.0.113.0/24', '2001:db8::/32'] });
  assert.equal(lists.callerRefusal('acme', 'g/web', '203.0.113.5'), undefined);
  assert.equal(lists.callerRefusal('acme', 'g/web', '::ffff:203.0.113.5'), undefined);
  assert.equal(lists.callerRefusal('acme', 'g/web', '2001:db8::1'), undefined);
  assert.equal(
    lists.callerRefusal('acme', 'g/web', '198.51.100.1'),
    'source address 198.51.100.1 is not in the allow_from list of tenant acme',
  );
  await lists.change('acme', 'g/web', { allowFrom: ['203.0.113.128/25'] });
  assert.equal(
    lists.callerRefusal('acme', 'g/web', '203.0.113.5'),
    'source address 203.0.113.5 is not in the allow_from list of repository g/web',
  );
  assert.equal(lists.callerRefusal('acme', 'g/other', '203.0.113.5'), undefined, 'another repository');
  assert.equal(lists.callerRefusal('beta', 'g/web', '198.51.100.1'), undefined, 'another tenant');
  // stored: a fresh instance (a restart) sees the same
  const again = new SourceAllowlists(store, new FakeClock(), quietLog());
  await again.start();
  assert.deepEqual(again.view('acme'), {
    allow_from: ['203.0.113.0/24', '2001:db8::/32'],
    tunnel_from: null,
  });
  assert.deepEqual(again.view('acme', 'g/web'), { allow_from: ['203.0.113.128/25'] });
  // [] removes a list
  await lists.change('acme', '', { allowFrom: [] });
  assert.deepEqual(lists.view('acme'), { allow_from: null, tunnel_from: null });
  await store.close();
});

test('tunnel_from bounds connector logins; a bad change is refused and keeps the old lists', async () => {
  const { store, lists } = await setup();
  await lists.change('acme', '', { tunnelFrom: ['10.0.0.0/8'], allowFrom: ['192.0.2.0/24'] });
  assert.equal(lists.tunnelRefusal('acme', '10.1.2.3'), undefined);
  assert.equal(
    lists.tunnelRefusal('acme', '192.0.2.1'),
    'source address 192.0.2.1 is not in the tunnel_from list of tenant acme',
  );
  await assert.rejects(
    lists.change('acme', '', { allowFrom: ['192.0.2.0/24', 'nope'] }),
    /invalid address block "nope"/,
  );
  assert.deepEqual(lists.view('acme'), { allow_from: ['192.0.2.0/24'], tunnel_from: ['10.0.0.0/8'] });
  assert.deepEqual(await store.listAllowlists('beta'), []);
  // only allowFrom changes; tunnel_from stays
  await lists.change('acme', '', { allowFrom: null });
  assert.deepEqual(lists.view('acme'), { allow_from: null, tunnel_from: ['10.0.0.0/8'] });
  await store.close();
});

test('another member changed a list: re-read on the remote event, then onChanged hears it; removed with the tenant', async () => {
  const { store, events, lists } = await setup();
  const other = new SourceAllowlists(store, new FakeClock(), quietLog());
  await other.start();
  await other.change('acme', '', { allowFrom: ['192.0.2.1'] });
  assert.equal(lists.callerRefusal('acme', 'g/web', '192.0.2.2'), undefined, 'not told yet');
  // what a listener sees when it hears: the list as re-read
  const heard = new Promise<string | undefined>((resolve) =>
    lists.onChanged((tenant) => resolve(lists.callerRefusal(tenant, 'g/web', '192.0.2.2'))),
  );
  events.emit({ kind: 'allow-from', tenant: 'acme', origin: 'remote' });
  assert.match((await heard) ?? '', /not in the allow_from list/, 'heard after the re-read');
  assert.match(lists.callerRefusal('acme', 'g/web', '192.0.2.2') ?? '', /not in the allow_from list/);
  events.emit({ kind: 'removed', tenant: 'acme' });
  assert.equal(lists.callerRefusal('acme', 'g/web', '192.0.2.2'), undefined);
  assert.equal(await store.deleteTenant('acme'), true);
  assert.deepEqual(await store.listAllowlists(), []);
  await store.close();
});

test('a change here: onChanged hears the tenant once the new lists apply; a refused change is not heard; a failing listener does not stop the others', async () => {
  const { store, lists } = await setup();
  const heard: Array<[string, string | undefined]> = [];
  lists.onChanged(() => {
    throw new Error('a broken listener');
  });
  const off = lists.onChanged((tenant) => heard.push([tenant, lists.tunnelRefusal(tenant, '192.0.2.1')]));
  await lists.change('acme', '', { tunnelFrom: ['10.0.0.0/8'] });
  assert.deepEqual(heard, [
    ['acme', 'source address 192.0.2.1 is not in the tunnel_from list of tenant acme'],
  ]);
  await assert.rejects(lists.change('beta', '', { allowFrom: ['nope'] }), /invalid address block/);
  assert.equal(heard.length, 1, 'a refused change is not heard');
  off();
  await lists.change('acme', '', { tunnelFrom: null });
  assert.equal(heard.length, 1, 'not heard once unsubscribed');
  await store.close();
});
