import { readFileSync } from 'node:fs';
import ssh2 from 'ssh2';

/**
 * Tries one SSH login with ssh2 and resolves "ok" or the error message (never rejects). `key`
 * is a key file path, or the key itself as a Buffer; `from` is the local address to connect from.
 */
export function tryLogin(
  port: number,
  o: { user: string; key?: string | Buffer; password?: string; from?: string },
): Promise<string> {
  return new Promise((resolve) => {
    const c = new ssh2.Client();
    c.once('ready', () => {
      c.end();
      resolve('ok');
    });
    // `on`, not `once`: a refused connection can report two errors (a reset, then "lost before
    // handshake"); the first one is the answer, a second must not become an uncaught exception
    c.on('error', (e) => resolve(e.message));
    c.connect({
      host: '127.0.0.1',
      port,
      localAddress: o.from ?? '127.0.0.1',
      username: o.user,
      ...(o.key ? { privateKey: typeof o.key === 'string' ? readFileSync(o.key) : o.key } : {}),
      ...(o.password ? { password: o.password } : {}),
      tryKeyboard: false,
      readyTimeout: 30_000,
    });
  });
}
