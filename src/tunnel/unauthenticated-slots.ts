/**
 * Connections not logged in yet, in all and per source address: the bound every SSH listener
 * (the tunnel port and the SSH front door) puts on what a caller can make it hold before login.
 * A slot is taken when the connection arrives and given back once, at login or close.
 */
import { normalizeIp } from './session-util.js';

export type SlotBound = 'max_unauthenticated' | 'unauthenticated_per_source';

export class UnauthenticatedSlots {
  private total = 0;
  private readonly perSource = new Map<string, number>();
  /** What this process holds: under `workers`, its share of the gateway's bounds (rounded up). */
  private readonly held: { max: number; perSource: number };

  constructor(
    private readonly max: number,
    private readonly maxPerSource: number,
    /** Processes the bounds are shared over (`workers`; 1: this process holds them whole). */
    private readonly processes = 1,
  ) {
    const share = (n: number) => Math.max(1, Math.ceil(n / processes));
    this.held = { max: share(max), perSource: share(maxPerSource) };
  }

  /** The bound a new connection from `ip` (normalized) would break, if any. */
  refusal(ip: string): SlotBound | undefined {
    if (this.total >= this.held.max) return 'max_unauthenticated';
    if ((this.perSource.get(ip) ?? 0) >= this.held.perSource) return 'unauthenticated_per_source';
    return undefined;
  }

  /** The refusal as a user reads it (after "… connection refused: "), naming the configured bound. */
  describe(bound: SlotBound, ip: string): string {
    const each = (n: number) => (this.processes > 1 ? `, ${n} in each of ${this.processes} workers` : '');
    return bound === 'max_unauthenticated'
      ? `too many unauthenticated connections (max_unauthenticated ${this.max}${each(this.held.max)})`
      : `too many unauthenticated connections from ${ip} (max_unauthenticated_per_source ${this.maxPerSource}${each(this.held.perSource)})`;
  }

  /** Takes a slot for `ip`; the function gives it back (once; later calls do nothing). */
  take(ip: string): () => void {
    this.total++;
    this.perSource.set(ip, (this.perSource.get(ip) ?? 0) + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.total--;
      const n = (this.perSource.get(ip) ?? 1) - 1;
      if (n <= 0) this.perSource.delete(ip);
      else this.perSource.set(ip, n);
    };
  }

  /** Slots held, in all or by one source address. */
  count(ip?: string): number {
    return ip === undefined ? this.total : (this.perSource.get(normalizeIp(ip)) ?? 0);
  }
}
