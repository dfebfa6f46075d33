import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { exposedGc, HEAP_TRIM_DEFAULTS, type HeapLook, HeapTrimPolicy } from './heap-trim.js';

const MiB = 1024 * 1024;

/**
 * A young generation the test moves by hand; `collect` shrinks it when `shrinks` says so, and
 * leaves `live` bytes in the old space.
 */
function fakeHeap(start: Omit<HeapLook, 'old'> & { old?: number }) {
  const h = { now: { old: 0, ...start }, collections: 0, shrinks: true, live: start.old ?? 0 };
  return {
    h,
    deps: {
      look: () => ({ ...h.now }),
      collect: () => {
        h.collections++;
        h.now.used = 0;
        h.now.old = h.live;
        if (h.shrinks) h.now.size = 1 * MiB;
      },
    },
  };
}

describe('idle heap trim', () => {
  test('a young generation left large by the start is collected once the gateway is idle', () => {
    const { h, deps } = fakeHeap({ size: 16 * MiB, used: 2.5 * MiB });
    const p = new HeapTrimPolicy(deps);
    assert.equal(p.check(), 0); // the first look only records
    for (let i = 1; i < HEAP_TRIM_DEFAULTS.quietLooks; i++) {
      h.now.used += 100 * 1024; // a few timers' worth
      assert.equal(p.check(), 0);
    }
    assert.equal(h.collections, 0); // not yet 30 s of quiet
    h.now.used += 100 * 1024;
    assert.equal(p.check(), 0);
    assert.equal(h.collections, 1);
    assert.equal(h.now.size, 1 * MiB);
    // small now: nothing more to do however idle it stays
    for (let i = 0; i < 5; i++) p.check();
    assert.equal(h.collections, 1);
  });

  test('a busy gateway is never interrupted: allocation above the bound, or a scavenge, means busy', () => {
    const { h, deps } = fakeHeap({ size: 16 * MiB, used: 1 * MiB });
    const p = new HeapTrimPolicy(deps);
    p.check();
    h.now.used += HEAP_TRIM_DEFAULTS.idleBytes + 1;
    p.check();
    h.now.used = 0.2 * MiB; // a scavenge ran in between
    p.check();
    assert.equal(h.collections, 0);
    for (let i = 1; i < HEAP_TRIM_DEFAULTS.quietLooks; i++) {
      h.now.used += 1024; // then quiet…
      p.check();
    }
    h.now.used += HEAP_TRIM_DEFAULTS.idleBytes + 1; // …until a burst just before the collection
    p.check();
    assert.equal(h.collections, 0);
    for (let i = 0; i < HEAP_TRIM_DEFAULTS.quietLooks; i++) {
      h.now.used += 1024;
      p.check();
    }
    assert.equal(h.collections, 1);
  });

  test('a young generation at its initial size is left alone', () => {
    const { h, deps } = fakeHeap({ size: 1 * MiB, used: 0 });
    const p = new HeapTrimPolicy(deps);
    for (let i = 0; i < 10; i++) p.check();
    assert.equal(h.collections, 0);
  });

  test("old space a busy spell grew is collected once quiet, whatever the young generation's size", () => {
    const { h, deps } = fakeHeap({ size: 1 * MiB, used: 0, old: 20 * MiB });
    h.live = 17 * MiB;
    const p = new HeapTrimPolicy(deps);
    const quietFor = (looks: number) => {
      for (let i = 0; i < looks; i++) {
        h.now.used += 1024;
        p.check();
      }
    };
    p.check();
    quietFor(HEAP_TRIM_DEFAULTS.quietLooks - 1);
    assert.equal(h.collections, 0); // not yet 30 s of quiet
    quietFor(1);
    assert.equal(h.collections, 1); // the start's garbage
    assert.equal(h.now.old, 17 * MiB);
    // live objects added (sessions): under the bound, nothing to do however idle it stays
    h.now.old += 6 * MiB;
    h.live += 6 * MiB;
    quietFor(3 * HEAP_TRIM_DEFAULTS.quietLooks);
    assert.equal(h.collections, 1);
    // a busy spell (scavenges) leaves 12 MiB more in the old space: one collection once quiet again
    h.now.old += 12 * MiB;
    h.now.used = 0;
    p.check();
    quietFor(HEAP_TRIM_DEFAULTS.quietLooks);
    assert.equal(h.collections, 2);
    assert.equal(h.now.old, 23 * MiB);
    quietFor(3 * HEAP_TRIM_DEFAULTS.quietLooks);
    assert.equal(h.collections, 2);
  });

  test('collections that do not shrink it are retried three times, then ever more rarely', () => {
    const { h, deps } = fakeHeap({ size: 16 * MiB, used: 0 });
    h.shrinks = false;
    const p = new HeapTrimPolicy(deps, {
      ...HEAP_TRIM_DEFAULTS,
      intervalMs: 5_000,
      quietLooks: 1,
      maxBackoffMs: 60_000,
    });
    p.check();
    const skips = Array.from({ length: 7 }, () => p.check());
    assert.deepEqual(skips, [0, 0, 0, 2, 4, 8, 12]); // capped at 60 s / 5 s
    assert.equal(h.collections, 7);
    // once it shrinks (V8 found the allocation rate low), the count starts over
    h.shrinks = true;
    assert.equal(p.check(), 0);
    assert.equal(h.now.size, 1 * MiB);
  });

  test('this node hands out a full collection without --expose-gc on its command line', () => {
    const gc = exposedGc();
    assert.equal(typeof gc, 'function');
    gc?.();
  });
});
