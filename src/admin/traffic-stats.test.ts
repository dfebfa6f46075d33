import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ACTIVITY_KEEP, type ActivityItem, latestActivity } from './activity.js';
import { mergeStats, type StatsMessage } from './traffic-stats.js';

test("the workers' figures add up: a tenant over several workers, a forward with connectors on two", () => {
  const w1: StatsMessage = {
    time: 't1',
    tenants: { acme: { sessions: 1, connections: 2, in_rate: 100, out_rate: 1000 } },
    forwards: { 'acme grp/web': { connections: 2, total_connections: 5, bytes_in: 10, bytes_out: 20 } },
  };
  const w2: StatsMessage = {
    time: 't2',
    tenants: {
      acme: { sessions: 1, connections: 1, in_rate: 1, out_rate: 2 },
      beta: { sessions: 1, connections: 0, in_rate: 0, out_rate: 0 },
    },
    forwards: {
      'acme grp/web': { connections: 1, total_connections: 1, bytes_in: 3, bytes_out: 4 },
      'beta g/db': { connections: 0, total_connections: 0, bytes_in: 0, bytes_out: 0 },
    },
  };
  const primary: StatsMessage = { time: 'now', tenants: {}, forwards: {} };
  assert.deepEqual(mergeStats([primary, w1, w2], 'now'), {
    time: 'now',
    tenants: {
      acme: { sessions: 2, connections: 3, in_rate: 101, out_rate: 1002 },
      beta: { sessions: 1, connections: 0, in_rate: 0, out_rate: 0 },
    },
    forwards: {
      'acme grp/web': { connections: 3, total_connections: 6, bytes_in: 13, bytes_out: 24 },
      'beta g/db': { connections: 0, total_connections: 0, bytes_in: 0, bytes_out: 0 },
    },
  });
  // the parts are not changed
  assert.equal(w1.tenants.acme?.sessions, 1);
});

test('the activity feed of several processes: in time order, the last ACTIVITY_KEEP of all', () => {
  const item = (ms: number, event: string): ActivityItem => ({
    time: new Date(ms).toISOString(),
    event,
    level: 'info',
  });
  const primary = [item(1_000, 'tenant.added'), item(5_000, 'tenant.removed')];
  const worker1 = Array.from({ length: ACTIVITY_KEEP }, (_, i) => item(2_000 + i, 'connection.opened'));
  const worker2 = [item(3_000, 'session.opened')];
  const all = latestActivity([primary, worker1, worker2]);
  assert.equal(all.length, ACTIVITY_KEEP);
  assert.equal(all.at(-1)?.event, 'tenant.removed');
  assert.ok(all.some((a) => a.event === 'session.opened'));
  assert.ok(!all.some((a) => a.event === 'tenant.added'), 'the oldest record is left out');
  for (let i = 1; i < all.length; i++) assert.ok(all[i - 1]!.time <= all[i]!.time, 'oldest first');
});
