import type { Socket } from 'node:net';
import type { Duplex, Readable, Writable } from 'node:stream';
import { packetReaderOf } from './packet-read.js';

/**
 * Gathers the writes a socket gets within one tick into one writev (cork now, uncork once the
 * ticks queued meanwhile have run). ssh2 writes every SSH packet (at most 128 KiB) to its socket
 * on its own, and a relay writes every channel chunk: one system call each. Corked, the packets
 * decrypted or encrypted from one read leave in one call. Order, backpressure (`write()`'s return
 * value) and EOF are unchanged: `end()` uncorks.
 *
 * The uncork waits one tick more than the write's own: a stream emits 'finish' in a tick it
 * queues when it ends, after the uncork of the tick that wrote the channel's EOF (on
 * 'prefinish'), and a relay closes the channel on 'finish'. Uncorking on the next tick sent the
 * EOF and the CLOSE of every forwarded connection in two writes (and the peer read them in two
 * reads); now they leave together. All of it still happens before the event loop goes on.
 */
export function coalesceWrites(socket: Socket): void {
  const write = socket.write;
  let corked = false;
  const uncork = () => {
    corked = false;
    socket.uncork();
  };
  const afterQueuedTicks = () => process.nextTick(uncork);
  socket.write = function (this: Socket, ...args: unknown[]) {
    if (!corked && !this.destroyed) {
      corked = true;
      this.cork();
      process.nextTick(afterQueuedTicks);
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
 * How much a relay lets queue in its destination's write buffer before it pauses the source.
 * `src.pipe(dst)` pauses as soon as `write()` returns false, i.e. beyond the destination's
 * highWaterMark: 16 KiB for a net.Socket. A channel chunk is up to 128 KiB (one SSH packet) and
 * corked sockets (`coalesceWrites`) hold it until the next tick, so every single chunk paused the
 * source and its 'drain' resumed it: a pause, a resume and a flow loop per packet, in both tunnel
 * processes. With 512 KiB (four of the largest packets) a destination that keeps up never pauses
 * its source; one that does not still stops it within 512 KiB + one chunk. (256 KiB, two 128 KiB
 * packets, still paused uploads often: `bench/ab.ts`, 8 rounds twice, up 6.29 → 6.76 Gbit/s at
 * 1.81 → 1.69 s/GB.)
 */
export const RELAY_BACKLOG = 512 * 1024;

/**
 * `src.pipe(dst)` that reports once: `cb()` when `src` has ended and `dst` has finished writing,
 * `cb(err)` on an error or a premature close of either; `count(n)` sees every chunk. Like
 * `stream.pipeline` for two streams, without its per-call AbortController and the DOMException it
 * builds when it finishes (the connection-rate profile had those at 4-6% of the gateway and of the
 * connector). Backpressure pauses `src` once `dst` holds more than `RELAY_BACKLOG` unwritten bytes
 * and resumes it on 'drain'; EOF on `src` ends `dst`. Neither stream is destroyed here: the caller
 * decides. A socket that reads into packets (packet-read.ts) emits no 'data': its reads come
 * through its reader, and a read the backlog refuses pauses it.
 */
export function pump(
  src: Readable,
  dst: Writable,
  cb: (err?: Error) => void,
  count?: (n: number) => void,
): void {
  const reader = packetReaderOf(src);
  let finished = false;
  const done = (err?: Error) => {
    if (finished) return;
    finished = true;
    if (reader) reader.attach(() => false);
    else src.off('data', onData);
    src.off('end', onEnd);
    dst.off('drain', onDrain);
    cb(err);
  };
  let waiting = false;
  const onDrain = () => {
    waiting = false;
    if (!finished) src.resume();
  };
  /** false: `dst` holds more than RELAY_BACKLOG, so `src` waits for its 'drain'. */
  const write = (chunk: Buffer): boolean => {
    count?.(chunk.length);
    // write() returns false beyond dst's own (small) highWaterMark, and then 'drain' follows
    // once it is empty: wait for it only when the backlog is large.
    if (dst.write(chunk) || dst.writableLength <= RELAY_BACKLOG) return true;
    if (!waiting) {
      waiting = true;
      dst.once('drain', onDrain);
    }
    return false;
  };
  const onData = (chunk: Buffer) => {
    if (!write(chunk)) src.pause();
  };
  const onEnd = () => dst.end();
  src.on('error', done);
  dst.on('error', done);
  src.once('close', () => {
    if (!src.readableEnded) done(premature());
  });
  dst.once('close', () => {
    if (!dst.writableFinished) done(premature());
  });
  dst.once('finish', () => done());
  src.once('end', onEnd);
  if (!reader) {
    src.on('data', onData);
    src.resume();
    return;
  }
  let go = true;
  for (const data of reader.attach((d) => !finished && write(d))) go = write(data) && go;
  if (go) src.resume();
}

/**
 * Pipes two duplex streams both ways with backpressure. Half-closes pass through (EOF on one
 * side ends the other's writable side); an error or premature close on either side destroys both.
 * `done` runs once, when both directions have finished; `tap` sees every chunk's size as it
 * passes. A socket dialled to read into packets (packet-read.ts) goes into an ssh2 channel
 * without the copy.
 */
export function relay(
  a: Duplex,
  b: Duplex,
  done: (r: RelayResult) => void,
  tap?: (aToB: number, bToA: number) => void,
): void {
  let aToB = 0;
  let bToA = 0;
  let pending = 2;
  let firstError: Error | undefined;
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
  pump(a, b, finish, (n) => {
    aToB += n;
    tap?.(n, 0);
  });
  pump(b, a, finish, (n) => {
    bToA += n;
    tap?.(0, n);
  });
}
