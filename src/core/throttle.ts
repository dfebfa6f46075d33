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

/**
 * The named throttles of one process, and how their failures reach the gateway's other processes
 * (`workers`): a source that fails on one worker counts on every worker, so a guesser gains
 * nothing from landing on several. A single process has no `publish`: nothing is sent.
 */
export class ThrottleShare {
  private readonly throttles = new Map<string, FailureThrottle>();
  /** Set in a worker: passes a failure to the other processes. */
  publish?: (name: string, source: string) => void;

  register(name: string, throttle: FailureThrottle): void {
    this.throttles.set(name, throttle);
  }

  /** A failure another process counted. */
  apply(name: string, source: string): void {
    this.throttles.get(name)?.fail(source, false);
  }
}

/** Counts failures per source (an IP address) and refuses a source that failed too often. */
export class FailureThrottle {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly clock: Clock,
    private readonly opts: ThrottleOptions,
    /** Under `workers`: the share this throttle's failures pass through, and its name there. */
    private readonly share?: { to: ThrottleShare; name: string },
  ) {
    share?.to.register(share.name, this);
  }

  /** Milliseconds left on a block, or 0 when the source may try. */
  blockedFor(source: string): number {
    const e = this.entries.get(source);
    if (!e) return 0;
    const left = e.blockedUntil - this.clock.now();
    return Math.max(left, 0);
  }

  /** Counts a failure; `publish` false for one another process counted (already shared). */
  fail(source: string, publish = true): void {
    if (publish && this.share?.to.publish) this.share.to.publish(this.share.name, source);
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
