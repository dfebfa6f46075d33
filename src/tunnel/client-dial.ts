import { connect as netConnect, type Socket } from 'node:net';
import { TetherError } from '../errors/index.js';
import type { TunnelClientOptions } from './client.js';
import { coalesceWrites } from './pipe.js';
import { RegionReader } from './region-read.js';

/** How the client session reaches the gateway over plain TCP, and how a failure is named to the user. */

/** A connector-side failure as the error a user reads: which gateway, what went wrong, what to try. */
export function describeFailure(
  opts: TunnelClientOptions,
  err: Error & { level?: string; code?: unknown },
): TetherError {
  const addr = opts.gatewayLabel ?? `${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`;
  if (err instanceof TetherError) return err;
  if (err.level === 'client-authentication' || /authentication methods failed/i.test(err.message)) {
    return new TetherError(
      'GATEWAY_AUTH_FAILED',
      `the gateway at ${addr} refused the key${opts.keyFingerprint ? ` ${opts.keyFingerprint}` : ''} for tenant "${opts.username}" ` +
        '(is the key registered with that tenant? "tether connector register --token T" enrolls it)',
      { status: 401, retryable: true, cause: err },
    );
  }
  if (err.level === 'client-timeout') {
    return new TetherError(
      'GATEWAY_UNREACHABLE',
      `the gateway at ${addr} did not answer in time (${err.message})`,
      {
        status: 503,
        retryable: true,
        cause: err,
      },
    );
  }
  if (typeof err.code === 'string' || err.level === 'client-socket') {
    return new TetherError('GATEWAY_UNREACHABLE', `cannot reach the gateway at ${addr}: ${err.message}`, {
      status: 503,
      retryable: true,
      cause: err,
    });
  }
  return new TetherError(
    'GATEWAY_SESSION_FAILED',
    `session with the gateway at ${addr} failed: ${err.message}`,
    {
      status: 503,
      retryable: true,
      cause: err,
    },
  );
}

export function tcpDial(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // read into regions, as the gateway reads its side (region-read.ts): uploads are decrypted in place
    const reader = new RegionReader();
    const sock = netConnect({
      host,
      port,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: 30_000,
      onread: reader.onread,
    });
    reader.bind(sock);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(Object.assign(new Error(`connect timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.removeAllListeners('error');
      coalesceWrites(sock);
      resolve(sock);
    });
    sock.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
