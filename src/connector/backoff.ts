import type { Clock } from '../core/clock.js';

export interface BackoffOptions {
  /** First ceiling, ms (0.5 s by default). */
  minDelay: number;
  /** Largest ceiling, ms (30 s by default). */
  maxDelay: number;
  /** A session that stayed up this long counts as healthy: the next drop starts over. */
  resetAfter?: number;
  clock: Clock;
  /** [0, 1); injected so tests are deterministic. */
  random?: () => number;
}

/**
 * Full-jitter exponential backoff: the n-th retry waits a random time in
 * [0, min(maxDelay, minDelay · 2ⁿ)). Spreads reconnecting connectors over time so a
 * gateway restart is not met by all of them at once.
 */
export class Backoff {
  private attempt = 0;
  private upSince: number | undefined;
  private timer: unknown;
  private readonly random: () => number;
  private readonly resetAfter: number;
  /** When the scheduled retry runs (ms since the epoch), for status. */
  nextAt: number | undefined;

  constructor(private readonly opts: BackoffOptions) {
    this.random = opts.random ?? Math.random;
    this.resetAfter = opts.resetAfter ?? 10_000;
  }

  /** Attempts since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  /** The ceiling for the next delay. */
  ceiling(): number {
    return Math.min(this.opts.maxDelay, this.opts.minDelay * 2 ** Math.min(this.attempt, 30));
  }

  /** The next delay, ms. Counts an attempt. */
  next(): number {
    if (this.upSince !== undefined) {
      if (this.opts.clock.now() - this.upSince >= this.resetAfter) this.attempt = 0;
      this.upSince = undefined;
    }
    const delay = Math.floor(this.random() * this.ceiling());
    this.attempt++;
    return delay;
  }

  /** The session is up; if it stays up for `resetAfter`, the next drop starts from the first delay. */
  connected(): void {
    this.upSince = this.opts.clock.now();
  }

  reset(): void {
    this.attempt = 0;
    this.upSince = undefined;
  }

  /** Runs `fn` after the next delay; returns the delay. One pending retry at a time. */
  schedule(fn: () => void): number {
    this.cancel();
    const delay = this.next();
    this.nextAt = this.opts.clock.now() + delay;
    this.timer = this.opts.clock.setTimeout(() => {
      this.timer = undefined;
      this.nextAt = undefined;
      fn();
    }, delay);
    return delay;
  }

  cancel(): void {
    if (this.timer !== undefined) this.opts.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.nextAt = undefined;
  }
}
