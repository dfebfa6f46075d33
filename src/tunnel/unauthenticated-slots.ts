/**
 * Connections not logged in yet, in all and per source address: the bound every SSH listener
 * (the tunnel port and the SSH front door) puts on what a caller can make it hold before login.
 * A slot is taken when the connection arrives and given back once, at login or close.
 */
import type { Duplex } from 'node:stream';
import type { RefusalFields, RefusalLog } from '../core/refusals.js';
import { normalizeIp } from './session-util.js';

export type SlotBound = 'max_unauthenticated' | 'unauthenticated_per_source';

/** A slot given (with the function that gives it back, once), or the bound that refused it. */
export type SlotAnswer = { release: () => void; refused?: undefined } | { refused: SlotBound };

/**
 * Where a listener takes its slots: this process's own count, or under `workers` the primary's
 * (one count for the whole gateway, src/gateway/workers/shared-slots.ts).
 */
export interface SlotKeeper {
  /** Takes a slot for `ip` (normalized): `done` is called at once, or once the primary answered. */
  acquire(ip: string, done: (answer: SlotAnswer) => void): void;
  /** The refusal as a user reads it (after "… connection refused: "), naming the configured bound. */
  describe(bound: SlotBound, ip: string): string;
  /** Slots held here, in all or by one source address. */
  count(ip?: string): number;
}

/**
 * Holds `socket` (paused) until its slot is settled. Refused: the refusal goes to `o.refusals`
 * (its burst keyed by `o.key`, the message "<o.what>: <the bound described>") and the socket is
 * closed. Gone meanwhile, or the listener `closing()` by the answer (under `workers` the
 * primary's, a round trip later): the slot goes back and the socket is closed. Else `admit` takes
 * the connection with the function that gives its slot back.
 */
export function slotFor(
  slots: SlotKeeper,
  socket: Duplex,
  ip: string,
  o: {
    closing: () => boolean;
    refusals: Pick<RefusalLog, 'refuse'>;
    key: string;
    fields: RefusalFields;
    /** What the message starts with ("tunnel connection refused"). */
    what: string;
  },
  admit: (release: () => void) => void,
): void {
  // a reset while the answer is awaited must not throw
  socket.on('error', () => {});
  slots.acquire(ip, (a) => {
    if (a.refused) {
      o.refusals.refuse(a.refused, o.key, o.fields, `${o.what}: ${slots.describe(a.refused, ip)}`);
      socket.destroy();
    } else if (socket.destroyed || o.closing()) {
      a.release();
      socket.destroy();
    } else admit(a.release);
  });
}

/** The keeper of one listener's slots (`pool`: its name) under `workers`, with its bounds. */
export type SharedSlots = (pool: string, max: number, maxPerSource: number) => SlotKeeper;

/** The bounds and counts of one listener in one process (also the primary's shared count). */
export class UnauthenticatedSlots implements SlotKeeper {
  private total = 0;
  private readonly perSource = new Map<string, number>();

  constructor(
    private readonly max: number,
    private readonly maxPerSource: number,
  ) {}

  /** The bound a new connection from `ip` (normalized) would break, if any. */
  refusal(ip: string): SlotBound | undefined {
    if (this.total >= this.max) return 'max_unauthenticated';
    if ((this.perSource.get(ip) ?? 0) >= this.maxPerSource) return 'unauthenticated_per_source';
    return undefined;
  }

  describe(bound: SlotBound, ip: string): string {
    return describeBound(bound, ip, this.max, this.maxPerSource);
  }

  acquire(ip: string, done: (answer: SlotAnswer) => void): void {
    const refused = this.refusal(ip);
    done(refused ? { refused } : { release: this.take(ip) });
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

  count(ip?: string): number {
    return ip === undefined ? this.total : (this.perSource.get(normalizeIp(ip)) ?? 0);
  }
}

export function describeBound(bound: SlotBound, ip: string, max: number, maxPerSource: number): string {
  return bound === 'max_unauthenticated'
    ? `too many unauthenticated connections (max_unauthenticated ${max})`
    : `too many unauthenticated connections from ${ip} (max_unauthenticated_per_source ${maxPerSource})`;
}
