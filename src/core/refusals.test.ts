import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { FakeClock } from '../../test/helpers/core.js';
import { RefusalLog } from './refusals.js';

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { log, lines };
}

test('a burst of refusals is logged once at its start and once with the count at its end', () => {
  const clock = new FakeClock();
  const { log, lines } = capture();
  const r = new RefusalLog(log, clock, 10_000);
  for (let i = 0; i < 50; i++)
    r.refuse('channels_per_session', 'acme', { tenant: 'acme' }, 'channel refused');
  assert.equal(lines.length, 1);
  assert.equal(lines[0]?.event, 'bound.refused');
  assert.equal(lines[0]?.count, 1);
  clock.advance(10_000);
  assert.equal(lines.length, 2);
  assert.equal(lines[1]?.count, 49);
  assert.equal(lines[1]?.burst, true);
  r.refuse('channels_per_session', 'acme', { tenant: 'acme' }, 'channel refused');
  assert.equal(lines.length, 3, 'a new burst starts after the window');
});

test('different keys are different bursts; the number of open bursts is bounded', () => {
  const clock = new FakeClock();
  const { log, lines } = capture();
  const r = new RefusalLog(log, clock, 10_000, 3);
  for (let i = 0; i < 100; i++) r.refuse('unauthenticated_per_source', `10.0.0.${i}`, {}, 'refused');
  // 3 keys of their own, then one shared key: 4 records, not 100
  assert.equal(lines.length, 4);
  clock.advance(10_000);
  const total = lines.reduce((n, l) => n + Number(l.count), 0);
  assert.equal(total, 100, 'every refusal is counted in some record');
});
