/**
 * Dialing a destination from the end of a tunnel (the connector's repositories, a peer's
 * exposures): TCP with a connect timeout, no Nagle delay, half-closes kept open for relay() to
 * pass through, and a failure reason a user can read.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { PacketReader } from './packet-read.js';
import { coalesceWrites } from './pipe.js';

/** Connects to host:port, or fails with a short reason ("connection refused", "timed out after 10 s"). */
export function dialDestination(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const reader = new PacketReader();
    const sock = netConnect({ host, port, noDelay: true, allowHalfOpen: true, onread: reader.onread });
    reader.bind(sock);
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

/** A socket error as a user reads it ("connection refused", "host not found", …). */
export function dialReason(e: NodeJS.ErrnoException): string {
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
