import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream';

/**
 * Gathers the writes a socket gets within one tick into one writev (cork now, uncork on the next
 * tick). ssh2 writes every SSH packet (at most 32 KiB) to its socket on its own, and a relay
 * writes every channel chunk: one system call each. Corked, the packets decrypted or encrypted
 * from one read leave in one call. Order, backpressure (`write()`'s return value) and EOF are
 * unchanged: `end()` uncorks.
 */
export function coalesceWrites(socket: Socket): void {
  const write = socket.write;
  let corked = false;
  const uncork = () => {
    corked = false;
    socket.uncork();
  };
  socket.write = function (this: Socket, ...args: unknown[]) {
    if (!corked && !this.destroyed) {
      corked = true;
      this.cork();
      process.nextTick(uncork);
    }
    return (write as (...a: unknown[]) => boolean).apply(this, args);
  } as Socket['write'];
}

export interface RelayResult {
  /** Bytes read from `a` and written to `b`. */
  aToB: number;
  /** Bytes read from `b` and written to `a`. */
  bToA: number;
  error?: Error;
}

/**
 * Pipes two duplex streams both ways with backpressure. Half-closes pass through (EOF on one
 * side ends the other's writable side); an error or premature close on either side destroys both.
 * `done` runs once, when both directions have finished.
 */
export function relay(a: Duplex, b: Duplex, done: (r: RelayResult) => void): void {
  let aToB = 0;
  let bToA = 0;
  let pending = 2;
  let firstError: Error | undefined;
  a.on('data', (c: Buffer) => {
    aToB += c.length;
  });
  b.on('data', (c: Buffer) => {
    bToA += c.length;
  });
  const finish = (err: Error | null | undefined) => {
    if (err && !firstError) {
      firstError = err;
      a.destroy();
      b.destroy();
    }
    if (--pending === 0) {
      // Both directions are complete: release both ends (an SSH channel needs its CLOSE).
      a.destroy();
      b.destroy();
      done({ aToB, bToA, error: firstError });
    }
  };
  pipeline(a, b, finish);
  pipeline(b, a, finish);
}
