import assert from 'node:assert/strict';
import { Duplex, PassThrough } from 'node:stream';
import { describe, test } from 'node:test';
import { FakeClock } from '../../test/helpers/core.js';
import type { Clock } from './clock.js';
import { defaultBurst, MeteredDuplex, MIN_BURST, TokenBucket } from './token-bucket.js';

describe('TokenBucket', () => {
  test('the burst passes at once, then each byte waits its share of the rate', () => {
    const clock = new FakeClock();
    const b = new TokenBucket(100_000, clock, 10_000);
    assert.equal(b.take(10_000), 0, 'the burst is free');
    assert.equal(b.take(50_000), 500, '50 kB at 100 kB/s: 500 ms');
    assert.equal(b.take(50_000), 1000, 'debt adds up: the next caller waits behind the first');
    clock.advance(1000);
    assert.equal(b.take(0), 0, 'after the wait the debt is paid');
  });

  test('idle time refills up to the burst, no further', () => {
    const clock = new FakeClock();
    const b = new TokenBucket(1000, clock, 2000);
    b.take(2000);
    clock.advance(60_000);
    assert.equal(b.take(2000), 0);
    assert.equal(b.take(1000), 1000);
  });

  test('over a long run the bytes that pass match the rate', () => {
    const clock = new FakeClock();
    const rate = 1_000_000;
    const b = new TokenBucket(rate, clock);
    let sent = 0;
    let t = 0;
    while (t < 10_000) {
      const wait = b.take(32 * 1024);
      clock.advance(wait);
      t += wait;
      sent += 32 * 1024;
    }
    const measured = sent / (t / 1000);
    assert.ok(Math.abs(measured - rate) / rate < 0.02, `measured ${measured} B/s`);
  });

  test('setRate keeps the debt and caps saved tokens; a zero rate is refused', () => {
    const clock = new FakeClock();
    const b = new TokenBucket(1000, clock, 1000);
    b.setRate(2000, 500);
    assert.equal(b.take(1500), 500, 'only 500 saved tokens remain: 1000 bytes of debt at 2000 B/s');
    assert.throws(() => b.setRate(0), RangeError);
    assert.throws(() => new TokenBucket(-1, clock), RangeError);
  });

  test('the default burst is a fifth of a second, at least 16 KiB', () => {
    assert.equal(defaultBurst(1000), MIN_BURST);
    assert.equal(defaultBurst(10_000_000), 2_000_000);
  });
});

/** Real time with ref'd timers (the system clock's are unref'd: a test would end early). */
const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

async function drain(s: Duplex): Promise<number> {
  let n = 0;
  for await (const c of s) n += (c as Buffer).length;
  return n;
}

describe('MeteredDuplex', () => {
  test('paces both directions to the rate, counts bytes and passes EOF through', async () => {
    const inner = new PassThrough();
    const up = new TokenBucket(400_000, systemClock, 16 * 1024);
    const down = new TokenBucket(400_000, systemClock, 16 * 1024);
    const counted = { up: 0, down: 0 };
    const m = new MeteredDuplex(
      inner,
      {
        up: [up],
        down: [down],
        onBytes: (u, d) => {
          counted.up += u;
          counted.down += d;
        },
      },
      systemClock,
    );
    const size = 200 * 1024;
    const t0 = Date.now();
    const reading = drain(m);
    for (let i = 0; i < size / 8192; i++) {
      if (!m.write(Buffer.alloc(8192, i))) await new Promise((r) => m.once('drain', r));
    }
    m.end();
    const got = await reading;
    const ms = Date.now() - t0;
    assert.equal(got, size);
    assert.deepEqual(counted, { up: size, down: size });
    assert.equal(m.bytesUp, size);
    assert.equal(m.bytesDown, size);
    // 200 KiB minus a 16 KiB burst at 400 kB/s: about 470 ms each way, the two overlap.
    assert.ok(ms >= 400, `took ${ms} ms: the cap was not applied`);
    assert.ok(ms < 3000, `took ${ms} ms`);
  });

  test('a large buffered chunk is paced out in slices, not held back whole', async () => {
    const inner = new PassThrough({ highWaterMark: 4 << 20 });
    inner.write(Buffer.alloc(1 << 20));
    const m = new MeteredDuplex(
      inner,
      { up: [], down: [new TokenBucket(1_000_000, systemClock, 16_384)] },
      systemClock,
    );
    const t0 = Date.now();
    const first = await new Promise<Buffer>((r) => m.once('data', r));
    assert.ok(first.length <= 32 * 1024, `first piece ${first.length} bytes`);
    assert.ok(Date.now() - t0 < 300, 'the first slice came without waiting for the whole megabyte');
    m.destroy();
  });

  test('without buckets it is a plain pass-through', async () => {
    const inner = new PassThrough();
    const m = new MeteredDuplex(inner, { up: [], down: [] }, systemClock);
    const reading = drain(m);
    m.end(Buffer.alloc(1 << 20));
    assert.equal(await reading, 1 << 20);
  });

  test('a premature close of the inner stream destroys the wrapper; destroying the wrapper destroys the inner', async () => {
    const inner = new PassThrough();
    const m = new MeteredDuplex(inner, { up: [], down: [] }, systemClock);
    const closed = new Promise((r) => m.once('close', r));
    m.on('error', () => {});
    inner.destroy();
    await closed;
    assert.ok(m.destroyed);

    const inner2 = new PassThrough();
    const m2 = new MeteredDuplex(inner2, { up: [], down: [] }, systemClock);
    m2.destroy();
    await new Promise((r) => setImmediate(r));
    assert.ok(inner2.destroyed);
  });

  test('a slow reader holds the inner stream back (backpressure, nothing dropped)', async () => {
    let produced = 0;
    const inner = new Duplex({
      read() {
        produced += 65536;
        this.push(Buffer.alloc(65536));
      },
      write(_c, _e, cb) {
        cb();
      },
    });
    const m = new MeteredDuplex(inner, { up: [], down: [] }, systemClock);
    m.pause();
    m.on('data', () => {});
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(produced < 1024 * 1024, `the inner stream produced ${produced} bytes with nobody reading`);
    m.destroy();
  });
});
