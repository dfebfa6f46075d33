import type { Clock } from './clock.js';

export interface ThrottleOptions {
  /** Failures within `windowMs` that start a block. */
  maxFailures: number;
  windowMs: number;
  /** How long refusals last once blocked. */
  blockMs: number;
  /** Bound on remembered sources, so a spray of addresses cannot grow memory without end. */
  maxEntries?: number;
}

interface Entry {
  failures: number[];
  blockedUntil: number;
}

/** Counts failures per source (an IP address) and refuses a source that failed too often. */
export class FailureThrottle {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly clock: Clock,
    private readonly opts: ThrottleOptions,
  ) {}

  /** Milliseconds left on a block, or 0 when the source may try. */
  blockedFor(source: string): number {
    const e = this.entries.get(source);
    if (!e) return 0;
    const left = e.blockedUntil - this.clock.now();
    return Math.max(left, 0);
  }

  fail(source: string): void {
    const now = this.clock.now();
    let e = this.entries.get(source);
    if (!e) {
      if (this.entries.size >= (this.opts.maxEntries ?? 100_000)) {
        const oldest = this.entries.keys().next().value;
        if (oldest !== undefined) this.entries.delete(oldest);
      }
      e = { failures: [], blockedUntil: 0 };
      this.entries.set(source, e);
    }
    e.failures = e.failures.filter((t) => now - t < this.opts.windowMs);
    e.failures.push(now);
    if (e.failures.length >= this.opts.maxFailures) {
      e.blockedUntil = now + this.opts.blockMs;
      e.failures = [];
    }
  }

  succeed(source: string): void {
    const e = this.entries.get(source);
    if (e && e.blockedUntil <= this.clock.now()) this.entries.delete(source);
  }
}
