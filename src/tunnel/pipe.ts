import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

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

const premature = () => Object.assign(new Error('premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });

/**
 * `src.pipe(dst)` that reports once: `cb()` when `src` has ended and `dst` has finished writing,
 * `cb(err)` on an error or a premature close of either. Like `stream.pipeline` for two streams,
 * without its per-call AbortController and the DOMException it builds when it finishes (the
 * connection-rate profile had those at 4-6% of the gateway and of the connector). Neither stream
 * is destroyed here: the caller decides.
 */
export function pump(src: Duplex, dst: Duplex, cb: (err?: Error) => void): void {
  let finished = false;
  const done = (err?: Error) => {
    if (finished) return;
    finished = true;
    cb(err);
  };
  src.on('error', done);
  dst.on('error', done);
  src.once('close', () => {
    if (!src.readableEnded) done(premature());
  });
  dst.once('close', () => {
    if (!dst.writableFinished) done(premature());
  });
  dst.once('finish', () => done());
  src.pipe(dst);
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
  pump(a, b, finish);
  pump(b, a, finish);
}
