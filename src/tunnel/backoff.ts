import type { Clock } from '../core/clock.js';

/**
 * Reconnect delays for every tunnel client (the connector's session, peer links and peer
 * forwards): full-jitter exponential backoff from 0.5 s to 30 s (DESIGN, wire protocol).
 */
export interface BackoffPolicy {
  /** First ceiling, ms. */
  readonly minDelay: number;
  /** Largest ceiling, ms. */
  readonly maxDelay: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = Object.freeze({ minDelay: 500, maxDelay: 30_000 });

/** The ceiling for retry number `attempt` (0 for the first retry): min(maxDelay, minDelay · 2^attempt). */
export function backoffCeiling(attempt: number, policy: BackoffPolicy = DEFAULT_BACKOFF): number {
  return Math.min(policy.maxDelay, policy.minDelay * 2 ** Math.min(attempt, 30));
}

/**
 * The wait before retry number `attempt` (0 for the first retry): a random time in
 * [0, ceiling). `random` returns a number in [0, 1) and is injected so tests can pin it.
 */
export function backoffDelay(
  attempt: number,
  random: () => number,
  policy: BackoffPolicy = DEFAULT_BACKOFF,
): number {
  return Math.floor(random() * backoffCeiling(attempt, policy));
}

export interface BackoffOptions extends BackoffPolicy {
  /** A session that stayed up this long counts as healthy: the next drop starts over. */
  resetAfter?: number;
  clock: Clock;
  /** [0, 1); injected so tests are deterministic. */
  random?: () => number;
}

/**
 * A retry schedule on the injected clock (the connector's session). Full-jitter exponential
 * backoff: the n-th retry waits a random time in
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
    return backoffCeiling(this.attempt, this.opts);
  }

  /** The next delay, ms. Counts an attempt. */
  next(): number {
    if (this.upSince !== undefined) {
      if (this.opts.clock.now() - this.upSince >= this.resetAfter) this.attempt = 0;
      this.upSince = undefined;
    }
    const delay = backoffDelay(this.attempt, this.random, this.opts);
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
