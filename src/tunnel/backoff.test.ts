import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { FakeClock } from '../../test/helpers/core.js';
import { Backoff, backoffDelay } from './backoff.js';

describe('Backoff (full jitter)', () => {
  test('ceilings double from 0.5 s and stop at 30 s', () => {
    const b = new Backoff({
      minDelay: 500,
      maxDelay: 30_000,
      clock: new FakeClock(1_000_000),
      random: () => 0.999999,
    });
    const delays = Array.from({ length: 10 }, () => b.next());
    assert.deepEqual(delays, [499, 999, 1999, 3999, 7999, 15_999, 29_999, 29_999, 29_999, 29_999]);
  });

  test('random 0 gives an immediate retry; the delay is random × ceiling', () => {
    const values = [0, 0.5, 0.25];
    const b = new Backoff({
      minDelay: 500,
      maxDelay: 30_000,
      clock: new FakeClock(1_000_000),
      random: () => values.shift()!,
    });
    assert.deepEqual([b.next(), b.next(), b.next()], [0, 500, 500]);
  });

  test('property: every delay lies in [0, min(max, min·2ⁿ))', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5000 }),
        fc.integer({ min: 1, max: 100_000 }),
        fc.array(fc.double({ min: 0, max: 0.9999999, noNaN: true }), { minLength: 1, maxLength: 40 }),
        (min, extra, randoms) => {
          const max = min + extra;
          const rs = [...randoms];
          const b = new Backoff({
            minDelay: min,
            maxDelay: max,
            clock: new FakeClock(1_000_000),
            random: () => rs.shift()!,
          });
          randoms.forEach((_, n) => {
            const d = b.next();
            assert.ok(d >= 0 && d < Math.min(max, min * 2 ** n), `delay ${d} at attempt ${n}`);
          });
        },
      ),
    );
  });

  test('a session that stayed up long enough starts the next retry from the first ceiling', () => {
    const clock = new FakeClock(1_000_000);
    const b = new Backoff({
      minDelay: 500,
      maxDelay: 30_000,
      resetAfter: 10_000,
      clock,
      random: () => 0.999999,
    });
    b.next();
    b.next();
    b.next();
    b.connected();
    clock.advance(1_000);
    assert.equal(b.next(), 3999, 'a short-lived session does not reset the backoff');
    b.connected();
    clock.advance(10_000);
    assert.equal(b.next(), 499);
    assert.equal(b.attempts, 1);
  });

  test('schedule runs the function after the delay on the injected clock; cancel stops it', () => {
    const clock = new FakeClock(1_000_000);
    const b = new Backoff({ minDelay: 1000, maxDelay: 30_000, clock, random: () => 0.5 });
    let runs = 0;
    assert.equal(
      b.schedule(() => runs++),
      500,
    );
    assert.equal(b.nextAt, clock.now() + 500);
    clock.advance(499);
    assert.equal(runs, 0);
    clock.advance(1);
    assert.equal(runs, 1);
    assert.equal(b.nextAt, undefined);
    b.schedule(() => runs++);
    b.cancel();
    assert.equal(clock.pending, 0);
    clock.advance(60_000);
    assert.equal(runs, 1);
  });
});

test('backoffDelay (peer links and forwards) is full jitter from 0.5 s doubling up to 30 s', () => {
  const top = () => 0.999999;
  assert.equal(backoffDelay(0, top), 499);
  assert.equal(backoffDelay(1, top), 999);
  assert.equal(backoffDelay(5, top), 15_999);
  assert.equal(backoffDelay(6, top), 29_999);
  assert.equal(backoffDelay(1000, top), 29_999);
  assert.equal(
    backoffDelay(3, () => 0),
    0,
  );
  assert.equal(
    backoffDelay(3, () => 0.5),
    2000,
  );
});
