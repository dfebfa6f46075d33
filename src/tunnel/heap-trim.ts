import v8 from 'node:v8';
import vm from 'node:vm';

/**
 * Gives V8's young generation back when the gateway or the connector is idle.
 *
 * V8 grows the young generation (two semi-spaces) while much of what is allocated survives, as
 * during the start (every module, the schemas, the store) or a busy spell, up to 16 MiB each on
 * 64-bit, and shrinks it only at a garbage collection that finds the allocation rate low. An idle
 * gateway allocates almost nothing, so no collection comes and the pages stay resident: about 14
 * MiB of an idle gateway's RSS. Every `intervalMs` this looks at the young generation; when it is
 * larger than V8's initial size and little was allocated in it (no scavenge, under `idleBytes`)
 * at each of the last `quietLooks` looks (30 s), it asks for one full collection, which then
 * shrinks it. A busy gateway (more than 0.8 MB/s allocated) is never interrupted, and the
 * collection costs some milliseconds of a quiet moment (usually two: V8 judges the allocation rate over the last
 * seconds of collections, so the first one after a busy spell often does not shrink it yet). After
 * three collections in a row that did not shrink it (another V8), each next attempt waits twice
 * as long. It also asks for one after 30 s of quiet when the old space grew by more than
 * `oldGrowthBytes` since its last collection: the binary keeps V8 from collecting the old
 * generation by itself below 64 MiB (src/bin/node-flags.ts), so a busy spell's garbage stays
 * there until something asks.
 */
export interface HeapTrimOptions {
  intervalMs: number;
  /** At most this many bytes allocated in the young generation since the last look = idle. */
  idleBytes: number;
  /** Young generation (one semi-space) larger than this is worth trimming. */
  minBytes: number;
  /**
   * Old space grown by more than this since the last collection asked for: worth one collection
   * once quiet, whatever the young generation's size.
   */
  oldGrowthBytes: number;
  /** Looks in a row that must find the gateway quiet before a collection. */
  quietLooks: number;
  /** The longest wait after collections that did not shrink it. */
  maxBackoffMs: number;
}

export const HEAP_TRIM_DEFAULTS: HeapTrimOptions = {
  intervalMs: 5_000,
  // 0.8 MB/s, under the rate V8 itself calls low (1 MB/s) when it decides whether to shrink: a
  // gateway holding a thousand idle sessions (keepalives every 15 s) stays under it
  idleBytes: 4 * 1024 * 1024,
  minBytes: 2 * 1024 * 1024,
  // the binary runs with a 64 MiB floor under the old generation's limit (src/bin/node-flags.ts),
  // so V8 runs no full collection of its own below it: what a busy spell left there is garbage
  // the next quiet moment can give back
  oldGrowthBytes: 8 * 1024 * 1024,
  // 30 s: traffic that pauses for less keeps its young generation (see below)
  quietLooks: 6,
  maxBackoffMs: 10 * 60_000,
};

/*
 * Why 30 s of quiet and not 5: a trimmed young generation regrows only slowly under traffic whose
 * garbage dies young (V8 doubles it once the bytes surviving since the last doubling exceed its
 * size), so the next transfer runs with many more scavenges for its first seconds. Trimming after
 * every 5 s pause doubled the tunnel CPU per GB of 3 s bulk rounds in bench/ab.ts (alternating
 * builds leave each gateway idle between its rounds); after 30 s of quiet that ramp is paid once
 * per idle spell.
 */

/** Collections that did not shrink it, retried at the next interval before backing off. */
const FREE_RETRIES = 3;

/** What the trim sees of the heap at each look: the young generation and the old space. */
export interface HeapLook {
  /** Capacity of the young generation (V8's `new_space` space_size). */
  size: number;
  /** Bytes allocated in it since the last scavenge. */
  used: number;
  /** Bytes in use in the old space (live objects and garbage not yet collected). */
  old: number;
}

export interface HeapTrimDeps {
  look(): HeapLook;
  /** A full garbage collection. */
  collect(): void;
}

/**
 * The policy, without timers: `check()` is called every interval and returns the number of
 * intervals to skip before the next check.
 */
export class HeapTrimPolicy {
  private last?: HeapLook;
  private failures = 0;
  private quiet = 0;
  /** Old space in use after the last collection this asked for (0: none yet). */
  private oldAfterCollection = 0;

  constructor(
    private readonly deps: HeapTrimDeps,
    private readonly o: HeapTrimOptions = HEAP_TRIM_DEFAULTS,
  ) {}

  /** Returns how many intervals to wait before the next check (0 = the next one). */
  check(): number {
    const now = this.deps.look();
    const prev = this.last;
    this.last = now;
    // used fell: a scavenge ran since the last look, so the process allocates; not idle
    if (!prev || now.used < prev.used || now.used - prev.used > this.o.idleBytes) {
      this.quiet = 0;
      return 0;
    }
    const youngLarge = now.size > this.o.minBytes;
    const oldGrew = now.old - this.oldAfterCollection > this.o.oldGrowthBytes;
    if (!youngLarge) this.failures = 0;
    this.quiet++;
    if (!youngLarge && !oldGrew) return 0;
    if (this.quiet < this.o.quietLooks) return 0;
    this.deps.collect();
    const after = this.deps.look();
    this.last = after;
    this.oldAfterCollection = after.old;
    if (!youngLarge || after.size < now.size) {
      this.failures = 0;
      this.quiet = 0;
      return 0;
    }
    // V8 judges the allocation rate over the last ~5 s of collections: right after a busy
    // spell the first collection often finds it high still, and the next one shrinks
    this.failures++;
    if (this.failures <= FREE_RETRIES) return 0;
    const maxSkip = Math.max(1, Math.floor(this.o.maxBackoffMs / this.o.intervalMs));
    return Math.min(maxSkip, 2 ** (this.failures - FREE_RETRIES));
  }
}

/** V8's young generation and old space as `v8.getHeapSpaceStatistics()` reports them. */
function heapLook(): HeapLook {
  const spaces = v8.getHeapSpaceStatistics();
  const s = spaces.find((x) => x.space_name === 'new_space');
  const old = spaces.find((x) => x.space_name === 'old_space');
  return { size: s?.space_size ?? 0, used: s?.space_used_size ?? 0, old: old?.space_used_size ?? 0 };
}

/**
 * V8's full collection without starting node with --expose-gc: the flag is turned on for contexts
 * made from now on (it changes nothing else), and a short-lived context hands out its `gc`
 * function. Undefined if this node does not give one.
 */
export function exposedGc(): (() => void) | undefined {
  v8.setFlagsFromString('--expose-gc');
  const gc: unknown = vm.runInNewContext('typeof gc === "function" ? gc : undefined');
  return typeof gc === 'function' ? () => (gc as () => void)() : undefined;
}

/** Starts the idle trim (an unref'd timer) in this process; returns its stop function. */
export function startHeapTrim(o: HeapTrimOptions = HEAP_TRIM_DEFAULTS): () => void {
  const policy = new HeapTrimPolicy(
    {
      look: heapLook,
      // a fresh context each time (rare): a kept one would stay in the heap for good
      collect: () => exposedGc()?.(),
    },
    o,
  );
  let skip = policy.check(); // the first look: what the start left
  const timer = setInterval(() => {
    if (skip > 0) {
      skip--;
      return;
    }
    skip = policy.check();
  }, o.intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
