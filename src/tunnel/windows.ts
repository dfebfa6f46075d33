import { createRequire } from 'node:module';
import { DEFAULT_MAX_WINDOW, MIN_MAX_WINDOW } from '../config/window-size.js';

export { DEFAULT_MAX_WINDOW };

/**
 * Adaptive SSH channel windows: the one place outside `patches/` that knows ssh2's internals.
 *
 * ssh2 (as patched, see patches/ssh2+*.patch and docs/performance.md) asks each channel's
 * {@link WindowPolicy} how far to refill the channel's incoming window, tells it how many bytes
 * were consumed since the last refill, and tells it when the reader stalled (the channel's
 * readable buffer was full). The policy grows the window while the reader keeps up and a window
 * is consumed within about a round trip (the sender is waiting for credit: the link is longer
 * than the window), the way TCP receive autotuning and HPN-SSH do, up to a ceiling; it halves the
 * window when the reader stalls, so a slow reader holds at most about one (small) window.
 *
 * The round-trip time comes from pings (`keepalive@openssh.com`, which OpenSSH and ssh2 both
 * answer) timed on each SSH connection; the minimum of the recent samples is used, so a ping
 * that waited behind bulk data does not count as a long link.
 */

/** ssh2's own (initial and upstream-fixed) channel window: 2 MiB. Windows never shrink below it. */
export const INITIAL_WINDOW = MIN_MAX_WINDOW;

/**
 * No growth below this round-trip time. The fixed 2 MiB window already carries ~0.8 Gbit/s at
 * 10 ms RTT, and a ping on a short link measures the two processes' event-loop delays more than the
 * link: growing there only keeps more data in flight (kernel and process buffers), which costs
 * CPU per byte (measured on loopback: 3.3 → 4-10 s/GB) for no gain in throughput.
 */
export const MIN_GROWTH_RTT_MS = 10;

export interface WindowClock {
  /** Milliseconds, monotonic. */
  now(): number;
}

const monotonic: WindowClock = { now: () => performance.now() };

/**
 * One channel's receive-window policy. Pure: time comes from the clock, the round-trip time from
 * `rtt()` (undefined while unknown: no growth then).
 */
export class WindowPolicy {
  private window = INITIAL_WINDOW;
  private epochStart: number;
  private epochBytes = 0;
  /** The reader stalled during this epoch (no growth at its end). */
  private stalledInEpoch = false;
  /** The reader is stalled now (cleared when it drains): halve once per stall. */
  private stalledNow = false;

  constructor(
    private readonly max: number,
    private readonly clock: WindowClock,
    private readonly rtt: () => number | undefined,
  ) {
    this.epochStart = clock.now();
  }

  /** The window to refill to. */
  target(): number {
    return this.window;
  }

  /**
   * ssh2 refills when the unused window falls to this: after a quarter was consumed, so the
   * sender never waits for credit while the window covers 4/3 of the bandwidth-delay product.
   * Also at the initial 2 MiB: upstream refills once half is used, and on loopback the sender
   * then waited for credit often enough that both tunnel processes sat idle with work queued
   * (`bench/ab.ts`, 22 alternating rounds: 1 stream +5% at the same CPU per GB; the window, and
   * so what a slow reader can make us hold, is unchanged).
   */
  threshold(): number {
    return this.window - (this.window >> 2);
  }

  /** The reader stalled (its buffer is full): halve the window, once per stall. */
  stalled(): void {
    this.stalledInEpoch = true;
    if (this.stalledNow) return;
    this.stalledNow = true;
    this.window = Math.max(INITIAL_WINDOW, this.window >> 1);
  }

  /**
   * Called at each refill with the bytes received since the previous one; `resumed` when the
   * refill comes from the reader draining after a stall.
   */
  consumed(bytes: number, resumed: boolean): void {
    if (resumed) this.stalledNow = false;
    if (bytes > 0) this.epochBytes += bytes;
    if (this.epochBytes < this.window >> 1) return;
    const now = this.clock.now();
    const elapsed = now - this.epochStart;
    const rtt = this.rtt();
    // Half a window (or more) consumed within one RTT (scaled by the fraction consumed): the
    // window is below twice the bandwidth-delay product, and the sender may be waiting for
    // credit; double it if the reader kept up. (quic-go's rule, with 2 for its 4: a window of
    // 4/3 of the BDP already keeps the sender busy with our 3/4 refill threshold, and a larger
    // one only holds more data in flight, which on a short link costs CPU for nothing.)
    if (
      !this.stalledInEpoch &&
      rtt !== undefined &&
      rtt >= MIN_GROWTH_RTT_MS &&
      this.window < this.max &&
      elapsed < 2 * (this.epochBytes / this.window) * rtt
    ) {
      this.window = Math.min(this.max, this.window * 2);
    }
    this.epochStart = now;
    this.epochBytes = 0;
    this.stalledInEpoch = false;
  }
}

/**
 * How often a connection in use is pinged again, and how many samples the minimum covers. The
 * first few pings go out 1 s apart: a ping answered while either end is busy (the handshake, a
 * burst of data) comes back late, and the minimum needs a quiet sample to find the link's RTT.
 */
const PING_EVERY_MS = 10_000;
const EARLY_PINGS = 4;
const EARLY_PING_EVERY_MS = 1_000;
const SAMPLES = 8;

type ReplyList = Array<(failed: boolean, data?: unknown) => void>;

/** The ssh2 connection object a channel belongs to (client or server side), as far as we use it. */
interface SshConnection {
  _protocol?: { ping?: () => void };
  /** ssh2 client: callbacks for replies to global requests, in order. */
  _callbacks?: ReplyList;
  /** ssh2 server, as patched: the same list. */
  _replyCallbacks?: ReplyList;
  _sock?: { writable?: boolean; destroyed?: boolean };
}

/** Round-trip time of one SSH connection, from timed pings. */
export class RttProbe {
  private readonly samples: number[] = [];
  private lastPing = Number.NEGATIVE_INFINITY;
  private outstanding = false;
  private pings = 0;

  constructor(
    private readonly conn: SshConnection,
    private readonly clock: WindowClock,
  ) {}

  /** The smallest recent sample (ms), or undefined before the first answer. Pings when due. */
  rtt(): number | undefined {
    this.maybePing();
    return this.samples.length === 0 ? undefined : Math.min(...this.samples);
  }

  /** Sends a ping when none is outstanding and the last one is older than 10 s. Never throws. */
  maybePing(): void {
    const now = this.clock.now();
    const every = this.pings < EARLY_PINGS ? EARLY_PING_EVERY_MS : PING_EVERY_MS;
    if (this.outstanding || now - this.lastPing < every) return;
    const replies = this.conn._replyCallbacks ?? this.conn._callbacks;
    const proto = this.conn._protocol;
    if (!Array.isArray(replies) || typeof proto?.ping !== 'function') return;
    const sock = this.conn._sock;
    if (sock && (sock.destroyed || sock.writable === false)) return;
    this.lastPing = now;
    this.outstanding = true;
    this.pings++;
    // the reply list is ordered: our callback answers exactly this ping
    replies.push(() => {
      this.outstanding = false;
      this.add(this.clock.now() - now);
    });
    try {
      proto.ping();
    } catch {
      replies.pop();
      this.outstanding = false;
    }
  }

  /** Records a sample (exposed for tests). */
  add(ms: number): void {
    this.samples.push(Math.max(0, ms));
    if (this.samples.length > SAMPLES) this.samples.shift();
  }
}

export interface WindowOptions {
  /** Ceiling of a channel's receive window in bytes; INITIAL_WINDOW (2 MiB) = upstream's fixed window. */
  maxWindow: number;
  clock?: WindowClock;
  /** Round-trip time source instead of timed pings (tests). */
  rtt?: () => number | undefined;
}

/** What ssh2 (as patched) calls for each new channel: `channelWindow(channel)` → its policy. */
export type ChannelWindowFactory = (channel: { _client?: unknown }) => WindowPolicy | undefined;

/**
 * The options to spread into ssh2's `Server` or `Client#connect` configuration. With a ceiling at
 * the initial window nothing adapts and ssh2 behaves as upstream.
 */
export function channelWindowOptions(opts: WindowOptions): { channelWindow?: ChannelWindowFactory } {
  if (opts.maxWindow <= INITIAL_WINDOW) return {};
  const clock = opts.clock ?? monotonic;
  const probes = new WeakMap<object, RttProbe>();
  const channelWindow: ChannelWindowFactory = (channel) => {
    const conn = channel._client;
    if (typeof conn !== 'object' || conn === null) return undefined;
    let probe = probes.get(conn);
    if (!probe && opts.rtt === undefined) {
      probe = new RttProbe(conn as SshConnection, clock);
      probes.set(conn, probe);
      probe.maybePing();
    }
    const p = probe;
    return new WindowPolicy(opts.maxWindow, clock, opts.rtt ?? (() => p?.rtt()));
  };
  return { channelWindow };
}

const require = createRequire(import.meta.url);

/** True when the installed ssh2 carries Tether's patch (patches/ssh2+*.patch). */
export function ssh2Patched(): boolean {
  try {
    const channel = require('ssh2/lib/Channel.js') as { TETHER_PATCH?: number };
    return channel.TETHER_PATCH === 1;
  } catch {
    return false;
  }
}

/** The incoming window ssh2 currently grants a channel (for tests and diagnostics). */
export function incomingWindow(channel: unknown): { window: number; target: number | undefined } {
  const c = channel as { incoming?: { window?: number }; _windowPolicy?: { target(): number } };
  return { window: c.incoming?.window ?? 0, target: c._windowPolicy?.target() };
}
