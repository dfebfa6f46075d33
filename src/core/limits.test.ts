import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, test } from 'node:test';
import { FakeClock, tempStore } from '../../test/helpers/core.js';
import { isTetherError } from '../errors/index.js';
import { silentLogger } from '../log/index.js';
import { TenantEvents } from './events.js';
import { type PeerUsage, TrafficUsage, type UsageShare } from './limits/usage.js';
import {
  parseBalance,
  parseMaxConnections,
  parseRate,
  parseTraffic,
  periodWindow,
  TrafficLimits,
} from './limits.js';
import { MeteredDuplex } from './token-bucket.js';
import { formatBytes } from './units.js';

function message(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(isTetherError(e, 'LIMIT_INVALID'), `a LIMIT_INVALID error, got ${String(e)}`);
    assert.equal(e.status, 400);
    return e.message;
  }
  assert.fail('expected an error');
}

describe('parsing limits', () => {
  test('rates: decimal and binary prefixes, bits, off', () => {
    assert.equal(parseRate('10MB/s'), 10_000_000);
    assert.equal(parseRate('500KB/s'), 500_000);
    assert.equal(parseRate('500kB/s'), 500_000);
    assert.equal(parseRate('1MiB/s'), 1_048_576);
    assert.equal(parseRate('1.5 GB/s'), 1_500_000_000);
    assert.equal(parseRate('100Mbit/s'), 12_500_000);
    assert.equal(parseRate('100Mbps'), 12_500_000);
    assert.equal(parseRate('2048B/s'), 2048);
    assert.equal(parseRate('2048/s'), 2048);
    assert.equal(parseRate(1_000_000), 1_000_000);
    for (const off of ['0', 'off', 'OFF', 'none', 0, null]) assert.equal(parseRate(off), null);
  });

  test('bad rates name the value and say what to write', () => {
    assert.match(
      message(() => parseRate('10MB/h')),
      /invalid bandwidth "10MB\/h": "\/h" is not per second; use a rate such as 10MB\/s/,
    );
    assert.match(
      message(() => parseRate('10MB')),
      /a rate needs "\/s"/,
    );
    assert.match(
      message(() => parseRate('10Mb/s')),
      /the unit "Mb" is ambiguous: write MB for bytes or Mbit for bits/,
    );
    assert.match(
      message(() => parseRate('10XB/s')),
      /unknown unit "XB"/,
    );
    assert.match(
      message(() => parseRate('fast')),
      /invalid bandwidth "fast": use a rate such as/,
    );
    assert.match(
      message(() => parseRate('-5MB/s')),
      /invalid bandwidth "-5MB\/s"/,
    );
    assert.match(
      message(() => parseRate(-1)),
      /invalid bandwidth -1/,
    );
    assert.match(
      message(() => parseRate('2TB/s')),
      /at most 1 TB\/s/,
    );
    assert.match(
      message(() => parseRate(true)),
      /invalid bandwidth true/,
    );
    assert.match(
      message(() => parseRate('5MB', 'bandwidth_up')),
      /invalid bandwidth_up/,
    );
  });

  test('traffic quotas: month, rolling days, weeks, objects, off', () => {
    assert.deepEqual(parseTraffic('500GB/month'), { limit: 500e9, period: 'month' });
    assert.deepEqual(parseTraffic('10GB/30d'), { limit: 10e9, period: '30d' });
    assert.deepEqual(parseTraffic('10 GB / 30 days'), { limit: 10e9, period: '30d' });
    assert.deepEqual(parseTraffic('1TiB/week'), { limit: 1024 ** 4, period: '7d' });
    assert.deepEqual(parseTraffic({ limit: 1000, period: '2d' }), { limit: 1000, period: '2d' });
    assert.deepEqual(parseTraffic({ limit: 1000 }), { limit: 1000, period: 'month' });
    for (const off of ['off', '0', null, { limit: 0 }]) assert.equal(parseTraffic(off), null);
  });

  test('bad traffic quotas: unknown period, no period, bits, negative, too long a window', () => {
    assert.match(
      message(() => parseTraffic('500GB/year')),
      /unknown period "year": use month or a number of days such as 30d/,
    );
    assert.match(
      message(() => parseTraffic('500GB')),
      /say per what period/,
    );
    assert.match(
      message(() => parseTraffic('500Gbit/month')),
      /give an amount in bytes/,
    );
    assert.match(
      message(() => parseTraffic('-1GB/month')),
      /invalid traffic quota "-1GB\/month"/,
    );
    assert.match(
      message(() => parseTraffic('1GB/400d')),
      /1 to 366 days, not 400/,
    );
    assert.match(
      message(() => parseTraffic('10PB/month')),
      /at most 9 PB/,
    );
    assert.match(
      message(() => parseTraffic({ limit: -5 })),
      /limit must be a whole number of bytes/,
    );
    assert.match(
      message(() => parseTraffic({ limit: 5, period: 'fortnight' })),
      /unknown period "fortnight"/,
    );
  });

  test('connection caps and balance', () => {
    assert.equal(parseMaxConnections('50'), 50);
    assert.equal(parseMaxConnections(50), 50);
    assert.equal(parseMaxConnections('off'), null);
    assert.equal(parseMaxConnections(0), null);
    assert.match(
      message(() => parseMaxConnections(-3)),
      /invalid connection cap -3: use a whole number from 1 to 1000000/,
    );
    assert.match(
      message(() => parseMaxConnections('2.5')),
      /invalid connection cap "2.5"/,
    );
    assert.match(
      message(() => parseMaxConnections('lots')),
      /invalid connection cap "lots"/,
    );
    assert.equal(parseBalance('least-connections'), 'least-connections');
    assert.match(
      message(() => parseBalance('random')),
      /invalid balance "random": use round-robin or least-connections/,
    );
  });

  test('formatting and windows', () => {
    assert.equal(formatBytes(500e9), '500 GB');
    assert.equal(formatBytes(1536), '1.54 kB');
    assert.equal(formatBytes(12), '12 B');
    const now = Date.parse('2026-11-17T10:00:00Z');
    assert.deepEqual(periodWindow('month', now), { start: '2026-11-01', resets: '2026-12-01' });
    assert.deepEqual(periodWindow('month', Date.parse('2026-12-31T23:59:59Z')), {
      start: '2026-12-01',
      resets: '2027-01-01',
    });
    assert.deepEqual(periodWindow('30d', now), { start: '2026-10-19', resets: null });
    assert.deepEqual(periodWindow('1d', now), { start: '2026-11-17', resets: null });
  });
});

async function setup(start = Date.parse('2026-11-17T10:00:00Z')) {
  const store = await tempStore();
  const at = new Date(start).toISOString();
  for (const id of ['acme', 'beta'])
    await store.insertTenant({ id, quota: 20, created_at: at, updated_at: at });
  const clock = new FakeClock(start);
  const events = new TenantEvents();
  const limits = new TrafficLimits(store, clock, silentLogger(), { flushInterval: 5000 }, events);
  await limits.start();
  return { store, clock, events, limits };
}

function refusal(fn: () => unknown): { code: string; message: string; status: number } {
  try {
    fn();
  } catch (e) {
    if (isTetherError(e)) return { code: e.code, message: e.message, status: e.status };
    throw e;
  }
  assert.fail('expected a refusal');
}

describe('TrafficLimits', () => {
  test('a tenant without limits is not wrapped, balance is round robin, bytes count at close', async () => {
    const { limits, store } = await setup();
    assert.equal(limits.admit('acme', 'g/r', { tenant: 1000, repository: 1000 }), undefined);
    assert.equal(limits.balance('acme'), 'round-robin');
    limits.account('acme', 'g/r', 100, 200);
    assert.equal(limits.view('acme').usage.bytes, 300);
    await limits.stop();
    assert.deepEqual(await store.trafficSince('2026-11-01'), [
      { tenant_id: 'acme', label: 'g/r', bytes_in: 100, bytes_out: 200 },
    ]);
    await store.close();
  });

  test('connection caps, tenant-wide and per repository, refuse with the count', async () => {
    const { limits, store } = await setup();
    await limits.change('acme', '', { maxConnections: 2 });
    await limits.change('acme', 'g/db', { maxConnections: 1 });
    assert.equal(limits.admit('acme', 'g/r', { tenant: 1, repository: 1 }), undefined, 'no wrapping needed');
    assert.deepEqual(
      refusal(() => limits.admit('acme', 'g/r', { tenant: 2, repository: 2 })),
      {
        code: 'CONNECTION_LIMIT',
        message: 'too many connections (2 of 2)',
        status: 429,
      },
    );
    assert.equal(
      refusal(() => limits.admit('acme', 'g/db', { tenant: 1, repository: 1 })).message,
      'too many connections to g/db (1 of 1)',
    );
    assert.equal(
      limits.admit('beta', 'g/r', { tenant: 99, repository: 99 }),
      undefined,
      'other tenants are free',
    );
    await limits.stop();
    await store.close();
  });

  test('a spent monthly quota refuses with the reset date, logs once, and frees again next month', async () => {
    const { limits, store, clock } = await setup(Date.parse('2026-11-30T23:00:00Z'));
    await limits.change('acme', '', { trafficLimit: 1000, trafficPeriod: 'month' });
    const a = limits.admit('acme', 'g/r', { tenant: 0, repository: 0 });
    assert.ok(a?.metered, 'a quota needs live counting');
    const inner = new PassThrough();
    const s = a.wrap(inner) as MeteredDuplex;
    s.write(Buffer.alloc(600));
    inner.write(Buffer.alloc(500));
    s.read();
    await new Promise((r) => setImmediate(r));
    // 600 written, and read back: the 600 echoed by the PassThrough and 500 more.
    assert.equal(limits.view('acme').usage.bytes, 1700);
    assert.equal(limits.view('acme').usage.exhausted, true);
    assert.deepEqual(
      refusal(() => limits.admit('acme', 'g/r', { tenant: 0, repository: 0 })),
      {
        code: 'TRAFFIC_QUOTA_EXHAUSTED',
        message: 'traffic quota exhausted (1 kB per month, resets 2026-12-01)',
        status: 429,
      },
    );
    s.destroy();
    await limits.flush();
    clock.advance(3_600_000); // December
    await limits.flush();
    assert.equal(limits.view('acme').usage.bytes, 0);
    assert.equal(limits.view('acme').usage.period_start, '2026-12-01');
    assert.ok(limits.admit('acme', 'g/r', { tenant: 0, repository: 0 }));
    await limits.stop();
    await store.close();
  });

  test('a rolling quota counts the last n days; a repository quota counts only that repository', async () => {
    const { limits, store, clock } = await setup(Date.parse('2026-11-01T12:00:00Z'));
    await limits.change('acme', '', { trafficLimit: 1000, trafficPeriod: '2d' });
    await limits.change('acme', 'g/big', { trafficLimit: 300 });
    limits.account('acme', 'g/big', 300, 0);
    await limits.flush();
    assert.equal(
      refusal(() => limits.admit('acme', 'g/big', { tenant: 0, repository: 0 })).message,
      'traffic quota of g/big exhausted (300 B per month, resets 2026-12-01)',
    );
    assert.ok(limits.admit('acme', 'g/other', { tenant: 0, repository: 0 }), 'other repositories go on');
    limits.account('acme', 'g/other', 700, 0);
    assert.match(
      refusal(() => limits.admit('acme', 'g/other', { tenant: 0, repository: 0 })).message,
      /^traffic quota exhausted \(1 kB per 2 days, rolling\)$/,
    );
    await limits.flush();
    clock.advance(86_400_000);
    await limits.flush();
    assert.equal(limits.view('acme').usage.bytes, 1000, 'yesterday still counts');
    clock.advance(86_400_000);
    await limits.flush();
    assert.equal(limits.view('acme').usage.bytes, 0, 'two days later it dropped off');
    await limits.stop();
    await store.close();
  });

  test('counters and limits survive a restart; another member sees the flushed bytes', async () => {
    const { limits, store, clock, events } = await setup();
    await limits.change('acme', '', { bandwidthUp: 1_000_000, trafficLimit: 10_000 }, events);
    limits.account('acme', 'g/r', 4000, 1000);
    await limits.stop();
    const again = new TrafficLimits(store, clock, silentLogger());
    await again.start();
    const v = again.view('acme');
    assert.equal(v.usage.bytes, 5000);
    assert.equal(v.limits.bandwidth_up, 1_000_000);
    assert.equal(v.limits.traffic_limit, 10_000);
    assert.equal(v.limits.traffic_period, 'month');
    await again.stop();
    await store.close();
  });

  test('bytes counted while a flush is writing are written by stop(), not left behind', async () => {
    const { limits, store, clock } = await setup();
    limits.account('acme', 'g/r', 100, 100);
    const add = store.addTraffic.bind(store);
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    let writes = 0;
    store.addTraffic = async (rows) => {
      writes++;
      if (writes === 1) await held; // the timer's flush is still writing when stop() comes
      return add(rows);
    };
    clock.advance(5000);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(writes, 1, 'the timer flush is writing');
    limits.account('acme', 'g/r', 2, 2); // the last connection closes after its snapshot
    const stopped = limits.stop();
    release();
    await stopped;
    const again = new TrafficLimits(store, clock, silentLogger());
    await again.start();
    assert.equal(again.view('acme').usage.bytes, 204, 'every counted byte survives the restart');
    await again.stop();
    await store.close();
  });

  test('changes merge: undefined keeps, null clears; clearing everything deletes the row; a removed tenant is forgotten', async () => {
    const { limits, store, events } = await setup();
    await limits.change('acme', '', {
      bandwidthUp: 100_000,
      maxConnections: 5,
      balance: 'least-connections',
    });
    await limits.change('acme', '', { bandwidthDown: 200_000 });
    let v = limits.view('acme').limits;
    assert.deepEqual(v, {
      balance: 'least-connections',
      bandwidth_up: 100_000,
      bandwidth_down: 200_000,
      max_connections: 5,
      traffic_limit: null,
      traffic_period: null,
    });
    await limits.change('acme', '', {
      bandwidthUp: null,
      bandwidthDown: null,
      maxConnections: null,
      balance: null,
    });
    v = limits.view('acme').limits;
    assert.equal(v.balance, 'round-robin');
    assert.deepEqual(await store.listLimits('acme'), []);
    assert.equal(limits.has('acme'), false);
    await assert.rejects(
      limits.change('acme', 'g/r', { balance: 'least-connections' }),
      /balance applies to the whole tenant/,
    );
    await assert.rejects(limits.change('acme', 'not a label', { maxConnections: 1 }), /invalid repository/);
    await limits.change('acme', 'g/r', { maxConnections: 1 });
    events.emit({ kind: 'removed', tenant: 'acme' });
    assert.equal(limits.has('acme'), false);
    await limits.stop();
    await store.close();
  });

  test('a bandwidth cap wraps the stream with the tenant bucket and the repository bucket', async () => {
    const { limits, store } = await setup();
    await limits.change('acme', '', { bandwidthDown: 1_000_000 });
    await limits.change('acme', 'g/r', { bandwidthUp: 500_000 });
    const a = limits.admit('acme', 'g/r', { tenant: 0, repository: 0 });
    assert.ok(a);
    const s = a.wrap(new PassThrough());
    assert.ok(s instanceof MeteredDuplex);
    s.destroy();
    await limits.stop();
    await store.close();
  });

  test('a store that fails to answer does not stop the counting (retried, nothing lost)', async () => {
    const { limits, store, clock } = await setup();
    limits.account('acme', 'g/r', 10, 20);
    const add = store.addTraffic.bind(store);
    let fail = true;
    store.addTraffic = async (rows) => {
      if (fail) throw new Error('database is locked');
      return add(rows);
    };
    clock.advance(5000); // the timer's flush fails; it must not throw out of the timer
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(limits.view('acme').usage.bytes, 30, 'still counted in memory');
    fail = false;
    const trafficSince = store.trafficSince.bind(store);
    store.trafficSince = async () => {
      throw new Error('connection lost');
    };
    clock.advance(5000); // written, but the read-back fails: logged, retried
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(limits.view('acme').usage.bytes, 30, 'written but not read back: still counted');
    store.trafficSince = trafficSince;
    clock.advance(5000);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(limits.view('acme').usage.bytes, 30, 'counted once');
    await limits.stop();
    assert.deepEqual(await store.trafficSince('2026-01-01'), [
      { tenant_id: 'acme', label: 'g/r', bytes_in: 10, bytes_out: 20 },
    ]);
    await store.close();
  });
});

describe('traffic quotas under workers (UsageShare)', () => {
  /** Two workers' limits on one store, their messages passed on at once, as the primary does. */
  async function twoWorkers() {
    const { store, clock, limits: _unused, events } = await setup();
    await _unused.stop();
    const listeners = new Map<number, Set<(e: PeerUsage) => void>>([
      [1, new Set()],
      [2, new Set()],
    ]);
    const deliver = (from: number, e: PeerUsage) => {
      for (const [slot, fns] of listeners) if (slot !== from) for (const fn of fns) fn(e);
    };
    const share = (slot: number): UsageShare => ({
      counted: (seq, rows) => deliver(slot, { worker: slot, kind: 'counted', seq, rows }),
      written: (upTo) => deliver(slot, { worker: slot, kind: 'written', upTo }),
      onPeer: (fn) => {
        listeners.get(slot)!.add(fn);
        return () => listeners.get(slot)!.delete(fn);
      },
    });
    const a = new TrafficLimits(
      store,
      clock,
      silentLogger(),
      { flushInterval: 3_600_000, share: share(1) },
      events,
    );
    const b = new TrafficLimits(
      store,
      clock,
      silentLogger(),
      { flushInterval: 3_600_000, share: share(2) },
      events,
    );
    await a.start();
    await b.start();
    await a.change('acme', '', { trafficLimit: 1000 });
    await b.reloadTenant('acme');
    const told = () => new Promise((r) => setTimeout(r, 40)); // the 20 ms message pace
    return { store, a, b, told, gone: (slot: number) => deliver(slot, { worker: slot, kind: 'gone' }) };
  }

  test('bytes one worker counted count at once in the other: the quota holds across workers before any write', async () => {
    const { store, a, b, told } = await twoWorkers();
    a.account('acme', 'g/r', 600, 0);
    await told();
    assert.equal(b.view('acme').usage.bytes, 600);
    assert.ok(b.admit('acme', 'g/r', { tenant: 0, repository: 0 }), 'within the quota');
    b.account('acme', 'g/r', 0, 500);
    await told();
    assert.equal(a.view('acme').usage.bytes, 1100);
    assert.equal(
      refusal(() => a.admit('acme', 'g/r', { tenant: 0, repository: 0 })).code,
      'TRAFFIC_QUOTA_EXHAUSTED',
    );
    assert.equal(
      refusal(() => b.admit('acme', 'g/r', { tenant: 0, repository: 0 })).code,
      'TRAFFIC_QUOTA_EXHAUSTED',
    );
    // written by each, read back by each, in either order: never counted twice, never lost
    await a.flush();
    assert.equal(b.view('acme').usage.bytes, 1100, 'b still counts a’s bytes until it reads them back');
    await b.flush();
    assert.equal(b.view('acme').usage.bytes, 1100);
    assert.equal(a.view('acme').usage.bytes, 1100);
    await a.flush();
    assert.equal(a.view('acme').usage.bytes, 1100);
    await a.stop();
    await b.stop();
    await store.close();
  });

  test('a worker that dies: its unwritten bytes leave the others’ count; what it wrote stays', async () => {
    const { store, a, b, told, gone } = await twoWorkers();
    a.account('acme', 'g/r', 300, 0);
    await a.flush();
    a.account('acme', 'g/r', 200, 0);
    await told();
    assert.equal(b.view('acme').usage.bytes, 500);
    gone(1);
    assert.equal(b.view('acme').usage.bytes, 300);
    await b.flush();
    assert.equal(b.view('acme').usage.bytes, 300);
    await b.stop();
    await store.close();
  });
});

test("another worker's counts: summed until written, then until this worker's next read; gone with the worker", async () => {
  const { store, clock, limits } = await setup();
  await limits.stop();
  let peer: ((e: PeerUsage) => void) | undefined;
  const usage = new TrafficUsage(store, clock, silentLogger(), () => [], {
    counted: () => {},
    written: () => {},
    onPeer: (fn) => {
      peer = fn;
      return () => {};
    },
  });
  const k = 'acme\0g/r';
  const bytes = () => {
    const b = usage.bytes('acme', '', 'month');
    return b.in + b.out;
  };
  peer!({ worker: 2, kind: 'counted', seq: 1, rows: [[k, 100, 0]] });
  peer!({ worker: 2, kind: 'counted', seq: 2, rows: [[k, 0, 20]] });
  peer!({ worker: 2, kind: 'counted', seq: 3, rows: [['acme\0g/db', 3, 0]] });
  assert.equal(bytes(), 123);
  assert.equal(usage.bytes('acme', 'g/r', 'month').out, 20);
  peer!({ worker: 2, kind: 'written', upTo: 2 });
  assert.equal(bytes(), 123, 'written, not yet read back here');
  await usage.reload(); // the store holds nothing (this test writes nothing): 1 and 2 leave
  assert.equal(bytes(), 3, 'message 3 is not written yet');
  peer!({ worker: 2, kind: 'gone' });
  assert.equal(bytes(), 0);
  usage.close();
  await store.close();
});
