/**
 * Dialing a repository's destination and relaying bytes between it and an SSH channel.
 */
import { connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { coalesceWrites, pump } from '../tunnel/pipe.js';

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
 * Pipes an SSH channel and a socket both ways with backpressure. EOF passes through in each
 * direction; when both directions are finished the channel is closed (ssh2's client side
 * does not close half-open channels by itself); an error on either side destroys both.
 */
export function relayChannel(
  channel: Duplex & { close?: () => void },
  sock: Socket,
  hooks: RelayHooks,
): void {
  let toDestination = 0;
  let fromDestination = 0;
  let pending = 2;
  let firstError: Error | undefined;
  channel.on('data', (c: Buffer) => {
    toDestination += c.length;
    hooks.onBytes?.(c.length, 0);
  });
  sock.on('data', (c: Buffer) => {
    fromDestination += c.length;
    hooks.onBytes?.(0, c.length);
  });
  const finish = (err: Error | null | undefined) => {
    if (err && !firstError) {
      firstError = err;
      sock.destroy();
      channel.destroy();
    }
    if (--pending > 0) return;
    if (!firstError) {
      channel.close?.();
      sock.destroy();
    }
    hooks.done({ toDestination, fromDestination, error: firstError });
  };
  pump(channel, sock, finish);
  pump(sock, channel, finish);
}
