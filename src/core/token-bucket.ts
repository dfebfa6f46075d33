/**
 * Bandwidth caps: a token bucket per direction, and a stream wrapper that obeys one or more
 * of them with backpressure. Data is delayed, never dropped: a chunk that finds the bucket
 * empty holds its stream (the read is not pushed on, the write callback is not called) until
 * the bucket has paid for it.
 */
import { Duplex } from 'node:stream';
import type { Clock } from './clock.js';

/** The smallest burst a bucket allows, bytes (one SSH channel packet is up to 32 KiB). */
export const MIN_BURST = 16 * 1024;
/** The most a metered stream reads from its inner stream at once, bytes. */
export const READ_SLICE = 32 * 1024;
/**
 * The burst as a share of one second of the rate. It is also how late a paced stream's timer
 * may fire (a busy event loop) before the stream falls behind its rate.
 */
export const BURST_SECONDS = 0.2;

export function defaultBurst(rate: number): number {
  return Math.max(MIN_BURST, Math.round(rate * BURST_SECONDS));
}

/**
 * A token bucket that allows debt: `take(n)` always takes, and answers how long the caller
 * must wait before the n bytes may pass. Every stream sharing the bucket waits its turn, so
 * together they get the rate, each roughly in proportion to what it asks for.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private rateBps: number,
    private readonly clock: Clock,
    private burstBytes = defaultBurst(rateBps),
  ) {
    if (!(rateBps > 0)) throw new RangeError('a token bucket needs a positive rate');
    this.tokens = burstBytes;
    this.last = clock.now();
  }

  get rate(): number {
    return this.rateBps;
  }

  /** Takes n tokens; returns the wait in ms before they may be used (0 = at once). */
  take(n: number): number {
    this.refill();
    this.tokens -= n;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.rateBps) * 1000);
  }

  /** Changes the rate; debt and saved tokens carry over (capped by the new burst). */
  setRate(rate: number, burst = defaultBurst(rate)): void {
    if (!(rate > 0)) throw new RangeError('a token bucket needs a positive rate');
    this.refill();
    this.rateBps = rate;
    this.burstBytes = burst;
    this.tokens = Math.min(this.tokens, burst);
  }

  private refill(): void {
    const now = this.clock.now();
    const dt = now - this.last;
    this.last = now;
    if (dt > 0) this.tokens = Math.min(this.burstBytes, this.tokens + (dt * this.rateBps) / 1000);
  }
}

/** What a metered stream obeys and reports to. */
export interface StreamMeter {
  /** Buckets for bytes written into the stream (towards the repository). Empty: no cap. */
  readonly up: readonly TokenBucket[];
  /** Buckets for bytes read from the stream (from the repository). Empty: no cap. */
  readonly down: readonly TokenBucket[];
  /** Called as bytes pass (for live accounting). */
  onBytes?(up: number, down: number): void;
}

function waitFor(buckets: readonly TokenBucket[], n: number): number {
  let wait = 0;
  for (const b of buckets) wait = Math.max(wait, b.take(n));
  return wait;
}

/**
 * Wraps a duplex (an SSH channel) so that each direction passes through its buckets.
 * Backpressure both ways: a delayed read is not pushed on (and the inner stream is not read
 * further) until its wait is over; a delayed write does not call back until then. Half-closes
 * pass through; an error or a premature close of the inner stream destroys the wrapper.
 */
export class MeteredDuplex extends Duplex {
  /** Bytes written through so far (towards the repository). */
  bytesUp = 0;
  /** Bytes read through so far (from the repository). */
  bytesDown = 0;
  private readTimer: unknown;
  private writeTimer: unknown;
  private wantRead = false;
  private innerEnded = false;
  private pushedEnd = false;

  constructor(
    private readonly inner: Duplex,
    private readonly meter: StreamMeter,
    private readonly clock: Clock,
  ) {
    super({ allowHalfOpen: true, readableHighWaterMark: 64 * 1024, writableHighWaterMark: 64 * 1024 });
    inner.on('readable', () => {
      if (this.wantRead) this.pump();
    });
    inner.on('end', () => {
      this.innerEnded = true;
      if (this.readTimer === undefined) this.endReadable();
    });
    inner.on('error', (err: Error) => this.destroy(err));
    inner.on('close', () => {
      if (!this.innerEnded) return this.destroy();
      // A clean EOF still being paced out is delivered first; then, as with the bare
      // channel, a write side still open ends with the connection.
      const done = () => {
        if (!this.writableFinished) this.destroy();
      };
      if (this.readableEnded) done();
      else this.once('end', done);
    });
  }

  override _read(): void {
    this.wantRead = true;
    this.pump();
  }

  private pump(): void {
    while (this.wantRead && this.readTimer === undefined && !this.destroyed) {
      // Bounded slices: an SSH channel may hold its whole window (2 MiB); paying for that in one
      // piece would hold the stream for seconds and then release it in one burst.
      const n = Math.min(this.inner.readableLength, READ_SLICE);
      const chunk = (n > 0 ? this.inner.read(n) : this.inner.read()) as Buffer | null;
      if (chunk === null) return; // 'readable' or 'end' comes next
      this.bytesDown += chunk.length;
      this.meter.onBytes?.(0, chunk.length);
      const wait = waitFor(this.meter.down, chunk.length);
      if (wait > 0) {
        this.readTimer = this.clock.setTimeout(() => {
          this.readTimer = undefined;
          if (this.destroyed) return;
          this.wantRead = this.push(chunk);
          if (this.innerEnded && this.inner.readableLength === 0) this.endReadable();
          else this.pump();
        }, wait);
        return;
      }
      this.wantRead = this.push(chunk);
    }
  }

  private endReadable(): void {
    if (this.pushedEnd) return;
    this.pushedEnd = true;
    this.push(null);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.bytesUp += chunk.length;
    this.meter.onBytes?.(chunk.length, 0);
    const wait = waitFor(this.meter.up, chunk.length);
    const go = () => {
      this.writeTimer = undefined;
      if (this.inner.destroyed) return cb(new Error('the connection to the repository closed'));
      if (this.inner.write(chunk)) cb();
      else this.inner.once('drain', () => cb());
    };
    if (wait > 0) this.writeTimer = this.clock.setTimeout(go, wait);
    else go();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.inner.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.readTimer !== undefined) this.clock.clearTimeout(this.readTimer);
    if (this.writeTimer !== undefined) this.clock.clearTimeout(this.writeTimer);
    this.readTimer = undefined;
    this.writeTimer = undefined;
    if (!this.inner.destroyed) this.inner.destroy();
    cb(err);
  }
}
