import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { startPostgres } from '../../test/helpers/postgres.js';
import { openPostgresStore } from './postgres/index.js';

/**
 * Migration 0008_node_relay_version on the cluster's store: a member's heartbeat records the relay
 * header version it reads; a row written the way a member of an earlier release writes it (no
 * such column in its insert) reads back as null, which the cluster takes for version 1.
 */
const pg = await startPostgres();
after(() => pg.stop());

test('cluster members: relay_version from the heartbeat, null for a member of an earlier release', async () => {
  const url = await pg.newDatabase();
  const store = await openPostgresStore(url);
  const t = '2026-12-04T00:00:00.000Z';
  await store.heartbeat({
    node_id: 'new',
    advertise: '10.0.0.6',
    started_at: t,
    heartbeat_at: t,
    relay_version: 2,
  });
  // what an earlier release runs: its insert names only the four columns it knows
  const { default: pgLib } = await import('pg');
  const c = new pgLib.Client({ connectionString: url });
  await c.connect();
  await c.query(
    'INSERT INTO nodes (node_id, advertise, started_at, heartbeat_at) VALUES ($1, $2, $3, $3) ON CONFLICT (node_id) DO UPDATE SET advertise = excluded.advertise, heartbeat_at = excluded.heartbeat_at',
    ['old', '10.0.0.5', t],
  );
  await c.end();
  const rows = await store.listNodes();
  assert.deepEqual(
    rows.map((r) => [r.node_id, r.relay_version]),
    [
      ['new', 2],
      ['old', null],
    ],
  );
  // a second heartbeat keeps it
  await store.heartbeat({
    node_id: 'new',
    advertise: '10.0.0.6',
    started_at: t,
    heartbeat_at: t,
    relay_version: 2,
  });
  assert.equal((await store.listNodes()).find((r) => r.node_id === 'new')?.relay_version, 2);
  await store.close();
});
