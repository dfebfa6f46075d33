import type { Duplex } from 'node:stream';

/**
 * The connections a peer carries, counted by the socket on this machine's side (a caller's or
 * a destination's): what a draining stop waits for. A socket leaves the set when it closes.
 */
export class OpenConnections {
  private readonly sockets = new Set<Duplex>();
  private waiters: (() => void)[] = [];

  get size(): number {
    return this.sockets.size;
  }

  add(s: Duplex): void {
    if (s.destroyed || this.sockets.has(s)) return;
    this.sockets.add(s);
    s.once('close', () => {
      this.sockets.delete(s);
      if (this.sockets.size === 0) this.wake();
    });
  }

  /** Resolves once no connection is open (at once when none is). */
  whenEmpty(): Promise<void> {
    if (this.sockets.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

/** Resolves once every set is empty (each checked again after the others emptied). */
export async function allEmpty(sets: readonly OpenConnections[]): Promise<void> {
  while (sets.some((s) => s.size > 0)) await Promise.all(sets.map((s) => s.whenEmpty()));
}
