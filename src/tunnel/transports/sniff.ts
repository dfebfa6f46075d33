/**
 * First-bytes sniffing: every client of a tunnel port speaks first (an SSH client sends
 * "SSH-2.0-…", a TLS client its ClientHello, an HTTP client a request line), so one look at
 * the first chunk tells which protocol arrived. The chunk is put back, and whoever takes the
 * stream next (ssh2, node:tls, node:http) sees it from its first byte.
 */
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../log/index.js';

export type FirstBytes = 'tls' | 'ssh' | 'http' | 'other';

const HTTP_METHOD = /^[A-Z]{3,10} /;

/** What the first bytes of a stream look like. */
export function classify(chunk: Buffer): FirstBytes {
  if (chunk.length === 0) return 'other';
  // A TLS record of type "handshake" (22); SSLv2-style hellos are not accepted anywhere.
  if (chunk[0] === 0x16) return 'tls';
  const head = chunk.subarray(0, 12).toString('latin1');
  if (head.startsWith('SSH-') || (head.length < 4 && 'SSH-'.startsWith(head))) return 'ssh';
  if (HTTP_METHOD.test(head)) return 'http';
  return 'other';
}

export type Peeked = { chunk: Buffer } | { timeout: true } | { closed: true };

/**
 * Reads the first chunk from a paused stream and puts it back (`unshift`); the stream is left
 * paused. Resolves `{timeout}` when nothing arrives within `timeoutMs`, `{closed}` when the
 * stream ends or fails first.
 */
export function peekFirstChunk(socket: Duplex, timeoutMs: number): Promise<Peeked> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: Peeked) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onClosed);
      socket.off('close', onClosed);
      socket.off('error', onClosed);
      socket.pause();
      if ('chunk' in r) socket.unshift(r.chunk);
      resolve(r);
    };
    const onData = (chunk: Buffer) => finish({ chunk });
    const onClosed = () => finish({ closed: true });
    const timer = setTimeout(() => finish({ timeout: true }), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onClosed);
    socket.once('close', onClosed);
    socket.once('error', onClosed);
    socket.resume();
  });
}

export function sourceOf(socket: { remoteAddress?: string; remotePort?: number }): string {
  const ip = socket.remoteAddress ?? '?';
  return `${ip.includes(':') ? `[${ip}]` : ip}:${socket.remotePort ?? 0}`;
}

/** How long the plain SSH port waits for a client's first bytes before starting SSH anyway. */
export const PLAIN_PORT_SNIFF_MS = 2_000;

export interface PlainPortRoutes {
  /** Plain SSH (the default, also when the client waits for the server to speak first). */
  ssh: (socket: net.Socket) => void;
  /** A TLS ClientHello; undefined when tunnel.tls is not configured. */
  tls: ((socket: net.Socket) => void) | undefined;
  log: Logger;
}

/**
 * The plain SSH port: SSH as always, and a TLS ClientHello goes to the TLS transport when
 * tunnel.tls is configured (one open port can serve both). Without tunnel.tls it is logged and
 * answered with an SSH identification line, which a TLS client reports as "wrong version
 * number" (the connector turns that into "this port does not speak TLS").
 */
export async function routePlainPort(socket: net.Socket, routes: PlainPortRoutes): Promise<void> {
  socket.on('error', () => {});
  const first = await peekFirstChunk(socket, PLAIN_PORT_SNIFF_MS);
  if ('closed' in first) {
    socket.destroy();
    return;
  }
  if ('chunk' in first && classify(first.chunk) === 'tls') {
    if (routes.tls) {
      routes.tls(socket);
      return;
    }
    routes.log.warn(
      { event: 'tunnel.tls_not_configured', source: sourceOf(socket) },
      'a TLS client connected to the plain SSH tunnel port, but tunnel.tls is not configured: closed ' +
        '(configure tunnel.tls to accept TLS here, or the connector should use "host:port" without tls://)',
    );
    socket.end('SSH-2.0-Tether TLS is not configured on this port\r\n');
    setTimeout(() => socket.destroy(), 1000).unref();
    return;
  }
  routes.ssh(socket);
}
