import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock, tempStore } from '../../test/helpers/core.js';
import { silentLogger } from '../log/index.js';
import type { ConnectionRecordRow } from '../store/types.js';
import { CONNECTION_AUDIT_DEFAULTS, ConnectionAudit, type ConnectionRecord } from './connection-audit.js';
import { RefusalLog } from './refusals.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');

function rec(i: number, over: Partial<ConnectionRecord> = {}): ConnectionRecord {
  return {
    tenant: 'acme',
    label: 'g/r',
    frontDoor: 'raw_port',
    source: `10.0.0.1:${1000 + i}`,
    bytesIn: i,
    bytesOut: 2 * i,
    openedAt: T0 + i * 1000,
    endedAt: T0 + i * 1000 + 250,
    outcome: 'closed',
    ...over,
  };
}

/** A logger whose warn records are kept (to see refusals). */
function recordingLog() {
  const events: Array<Record<string, unknown>> = [];
  const log = silentLogger();
  const warn = (o: Record<string, unknown>, msg?: string) => events.push({ ...o, msg });
  return { log: Object.assign(Object.create(log), { warn }), events };
}

test('records are buffered and written in one batch per interval, then read back newest first', async () => {
  const store = await tempStore();
  const clock = new FakeClock(T0);
  const a = new ConnectionAudit(store, clock, silentLogger(), new RefusalLog(silentLogger(), clock));
  for (let i = 0; i < 3; i++) a.record(rec(i));
  assert.equal(a.buffered, 3);
  assert.deepEqual(
    await store.listConnectionRecords({ tenantId: 'acme', limit: 10 }),
    [],
    'nothing written yet',
  );
  clock.advance(CONNECTION_AUDIT_DEFAULTS.flushInterval);
  await a.flush();
  const rows = await store.listConnectionRecords({ tenantId: 'acme', limit: 10 });
  assert.deepEqual(
    rows.map((r) => r.source),
    ['10.0.0.1:1002', '10.0.0.1:1001', '10.0.0.1:1000'],
  );
  assert.deepEqual(rows[2], {
    tenant_id: 'acme',
    label: 'g/r',
    front_door: 'raw_port',
    source: '10.0.0.1:1000',
    identity: null,
    connector: null,
    bytes_in: 0,
    bytes_out: 0,
    opened_at: '2026-01-01T00:00:00.000Z',
    ended_at: '2026-01-01T00:00:00.250Z',
    duration_ms: 250,
    outcome: 'closed',
    reason: null,
  } satisfies ConnectionRecordRow);
  // since and limit
  assert.equal((await store.listConnectionRecords({ tenantId: 'acme', limit: 2 })).length, 2);
  assert.deepEqual(
    (
      await store.listConnectionRecords({ tenantId: 'acme', limit: 10, since: '2026-01-01T00:00:01.000Z' })
    ).map((r) => r.source),
    ['10.0.0.1:1002', '10.0.0.1:1001'],
  );
  assert.deepEqual(await store.listConnectionRecords({ tenantId: 'other', limit: 10 }), []);
  await a.stop();
  await store.close();
});

test('a full batch is written at once; stop writes the rest', async () => {
  const store = await tempStore();
  const clock = new FakeClock(T0);
  const a = new ConnectionAudit(store, clock, silentLogger(), new RefusalLog(silentLogger(), clock), {
    ...CONNECTION_AUDIT_DEFAULTS,
    batch: 4,
  });
  for (let i = 0; i < 5; i++) a.record(rec(i));
  await a.flush();
  assert.equal((await store.listConnectionRecords({ tenantId: 'acme', limit: 100 })).length, 5);
  a.record(rec(9));
  await a.stop();
  assert.equal((await store.listConnectionRecords({ tenantId: 'acme', limit: 100 })).length, 6);
  a.record(rec(10));
  assert.equal(a.buffered, 0, 'nothing is taken after stop');
  await store.close();
});

test('hostile text is clipped; a store that fails keeps a bounded buffer and counts the drops', async () => {
  const clock = new FakeClock(T0);
  const { log, events } = recordingLog();
  let fail = true;
  const written: ConnectionRecordRow[] = [];
  const store = {
    addConnectionRecords: async (rows: ConnectionRecordRow[]) => {
      if (fail) throw new Error('database is locked');
      written.push(...rows);
    },
    pruneConnectionRecords: async () => 0,
  };
  const a = new ConnectionAudit(store, clock, log, new RefusalLog(log, clock), {
    ...CONNECTION_AUDIT_DEFAULTS,
    batch: 10,
    maxBuffered: 25,
  });
  for (let i = 0; i < 40; i++) a.record(rec(i, { identity: 'x'.repeat(10_000), reason: 'y'.repeat(10_000) }));
  await a.flush();
  assert.ok(a.buffered <= 25, `buffer bounded: ${a.buffered}`);
  const refused = events.filter((e) => e.event === 'bound.refused' && e.reason === 'audit_buffer');
  assert.equal(refused.length, 1, 'one record per burst');
  assert.equal(refused[0]!.msg, 'connection audit records dropped: 25 are waiting for the store');
  assert.ok(
    events.some((e) => e.msg === 'could not write connection audit records; will retry'),
    'the failed write is logged',
  );
  fail = false;
  await a.stop();
  assert.ok(written.length >= 20 && written.length <= 25, `written ${written.length}`);
  assert.equal(written[0]!.identity!.length, 256);
  assert.equal(written[0]!.reason!.length, 256);
});

test('records older than the retention are deleted; retention 0 keeps none', async () => {
  const store = await tempStore();
  const clock = new FakeClock(T0 + 40 * 86_400_000);
  await store.addConnectionRecords([
    { ...row(T0), source: 'old' },
    { ...row(T0 + 35 * 86_400_000), source: 'new' },
  ]);
  const a = new ConnectionAudit(store, clock, silentLogger(), new RefusalLog(silentLogger(), clock));
  a.start();
  await waitUntil(
    async () => (await store.listConnectionRecords({ tenantId: 'acme', limit: 10 })).length === 1,
  );
  assert.deepEqual(
    (await store.listConnectionRecords({ tenantId: 'acme', limit: 10 })).map((r) => r.source),
    ['new'],
  );
  await a.stop();
  const off = new ConnectionAudit(store, clock, silentLogger(), new RefusalLog(silentLogger(), clock), {
    ...CONNECTION_AUDIT_DEFAULTS,
    retention: 0,
  });
  assert.equal(off.enabled, false);
  off.record(rec(1));
  await off.stop();
  assert.equal((await store.listConnectionRecords({ tenantId: 'acme', limit: 10 })).length, 1);
  await store.close();
});

function row(endedAt: number): ConnectionRecordRow {
  return {
    tenant_id: 'acme',
    label: 'g/r',
    front_door: 'raw_port',
    source: 's',
    identity: null,
    connector: null,
    bytes_in: 1,
    bytes_out: 1,
    opened_at: new Date(endedAt - 10).toISOString(),
    ended_at: new Date(endedAt).toISOString(),
    duration_ms: 10,
    outcome: 'closed',
    reason: null,
  };
}

async function waitUntil(ok: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}
