/**
 * Relaying bytes between a repository's destination and an SSH channel (the destination is
 * dialed with tunnel/dial.ts).
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { relay } from '../tunnel/pipe.js';

export interface RelayTotals {
  /** Bytes from `channel` to `sock`. */
  toDestination: number;
  /** Bytes from `sock` to `channel`. */
  fromDestination: number;
  error?: Error;
}

export interface RelayHooks {
  /** Called as bytes pass, so status can show live counters. */
  onBytes?: (toDestination: number, fromDestination: number) => void;
  done: (t: RelayTotals) => void;
}

/**
 * Pipes an SSH channel and a socket both ways with backpressure (`relay` in tunnel/pipe.ts):
 * EOF passes through in each direction; when both directions are finished both ends are released
 * (the channel gets its CLOSE: ssh2's client side does not close half-open channels by itself);
 * an error on either side destroys both. `onBytes` sees the bytes as they pass, for live status.
 */
export function relayChannel(channel: Duplex, sock: Socket, hooks: RelayHooks): void {
  relay(
    channel,
    sock,
    (r) => hooks.done({ toDestination: r.aToB, fromDestination: r.bToA, error: r.error }),
    hooks.onBytes,
  );
}
