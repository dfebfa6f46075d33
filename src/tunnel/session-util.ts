import type { Connection, ServerChannel, Session } from 'ssh2';
import { socketOf } from './ssh2-adapter.js';

export const REFUSE_SESSION =
  'tether: this gateway only carries port forwards; shells, commands and file transfer are refused\r\n';

/** Shells, commands, ptys and other subsystems get a clear refusal, never access. */
export function refuseSessionUse(session: Session): void {
  const refuse = (accept: (() => ServerChannel) | undefined) => {
    if (!accept) return;
    const ch = accept();
    ch.stderr.write(REFUSE_SESSION);
    ch.exit(1);
    ch.end();
  };
  session.on('shell', (accept) => refuse(accept));
  session.on('exec', (accept) => refuse(accept));
  session.on('sftp', (_a, reject) => reject?.());
  session.on('pty', (_a, reject) => reject?.());
  session.on('env', (_a, reject) => reject?.());
  session.on('x11', (_a, reject) => reject?.());
  session.on('auth-agent', (_a, reject) => reject?.());
}

/** Closes the connection's socket shortly after a polite end (a gone peer never answers it). */
export function destroySocket(client: Connection): void {
  const sock = socketOf(client);
  setTimeout(() => sock?.destroy(), 100).unref();
}

/** "::ffff:127.0.0.2" → "127.0.0.2": one source address has one spelling for per-source bounds. */
export function normalizeIp(ip: string | undefined): string {
  if (!ip) return 'unknown';
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m ? m[1]! : ip.toLowerCase();
}

/**
 * A peer that sends control messages but never reads the answers: stop reading its input once
 * our answers to it fill the channel's write buffer (its high-water mark, the SSH window size),
 * so what we hold for it stays bounded; SSH flow control then stops the peer.
 */
export function pauseWhileBacklogged(ch: ServerChannel): void {
  if (!ch.writableNeedDrain || ch.isPaused()) return;
  ch.pause();
  ch.once('drain', () => ch.resume());
}
