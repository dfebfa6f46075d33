import net from 'node:net';
import { TetherError } from '../../errors/index.js';
import type { OpenedStream } from './realms/types.js';

const WHY: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name lookup failed',
  ETIMEDOUT: 'timed out',
};

/** A short reason for a socket error that is safe to show a user (no addresses). */
export function socketErrorReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return (code && WHY[code]) ?? 'connection failed';
}

/** Opens a TCP connection to a target's sshd. */
export function dialTcp(host: string, port: number, timeoutMs: number): Promise<OpenedStream> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, noDelay: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new TetherError('TARGET_UNREACHABLE', 'timed out', { status: 504, retryable: true }));
    }, timeoutMs);
    timer.unref();
    s.once('connect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      s.on('error', () => {});
      resolve({ stream: s, close: () => s.destroy() });
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(
        new TetherError('TARGET_UNREACHABLE', socketErrorReason(err), {
          status: 502,
          retryable: true,
          cause: err,
        }),
      );
    });
  });
}
