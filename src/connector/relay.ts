/**
 * Dialing a repository's destination and relaying bytes between it and an SSH channel.
 */
import { connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { coalesceWrites, relay } from '../tunnel/pipe.js';

/** Connects to host:port, or fails with a short reason ("connection refused", "timed out after 10 s"). */
export function dialDestination(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = netConnect({ host, port, noDelay: true, allowHalfOpen: true });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.removeListener('error', onError);
      coalesceWrites(sock);
      resolve(sock);
    });
    const onError = (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new Error(dialReason(e)));
    };
    sock.once('error', onError);
  });
}

function dialReason(e: NodeJS.ErrnoException): string {
  switch (e.code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ENOTFOUND':
      return 'host not found';
    case 'EAI_AGAIN':
      return 'name lookup failed (DNS)';
    case 'EHOSTUNREACH':
      return 'no route to host';
    case 'ENETUNREACH':
      return 'network unreachable';
    case 'ECONNRESET':
      return 'connection reset';
    default:
      return e.message;
  }
}

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
  const onBytes = hooks.onBytes;
  if (onBytes) {
    channel.on('data', (c: Buffer) => onBytes(c.length, 0));
    sock.on('data', (c: Buffer) => onBytes(0, c.length));
  }
  relay(channel, sock, (r) => hooks.done({ toDestination: r.aToB, fromDestination: r.bToA, error: r.error }));
}
