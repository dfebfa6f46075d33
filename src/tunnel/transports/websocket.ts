/**
 * SSH over WebSocket: an HTTP server (fed decrypted connections by the TLS listener) that
 * upgrades requests for the tunnel path and hands the WebSocket, as a byte stream, to the
 * tunnel server. Everything else gets a short plain-text answer.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { createWebSocketStream, WebSocketServer } from 'ws';
import type { Logger } from '../../log/index.js';
import { sourceOf } from './sniff.js';
import type { TunnelAcceptor } from './tls-listener.js';

/** A complete HTTP/1.1 answer for a raw socket, then close. */
export function rawHttpAnswer(status: number, message: string): string {
  const body = `${message}\n`;
  return (
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Error'}\r\n` +
    'Content-Type: text/plain; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    'Connection: close\r\n\r\n' +
    body
  );
}

function refuse(socket: Duplex, status: number, message: string): void {
  socket.on('error', () => {});
  socket.end(rawHttpAnswer(status, message));
  setTimeout(() => socket.destroy(), 1000).unref();
}

export interface WebSocketTunnelOptions {
  path: string;
  /** Time for the request head, ms. */
  requestTimeout: number;
}

export class WebSocketTunnels {
  private readonly http: http.Server;
  private readonly wss: WebSocketServer;

  constructor(
    private readonly opts: WebSocketTunnelOptions,
    private readonly deps: { tunnel: TunnelAcceptor; log: Logger },
  ) {
    this.wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      clientTracking: false,
      // ssh2 writes packets of at most ~35 KB; leave room for larger writes.
      maxPayload: 4 * 1024 * 1024,
    });
    this.http = http.createServer(
      {
        maxHeaderSize: 16 * 1024,
        requestTimeout: opts.requestTimeout,
        headersTimeout: opts.requestTimeout,
        keepAliveTimeout: 5_000,
      },
      (req, res) => this.onRequest(req, res),
    );
    this.http.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) =>
      this.onUpgrade(req, socket, head),
    );
    this.http.on('clientError', (err: Error & { code?: string }, socket: Duplex) => {
      this.deps.log.debug(
        { event: 'tunnel.websocket_bad_request', reason: err.code ?? err.message },
        'bad HTTP request on the WebSocket tunnel port',
      );
      if (socket.writable) refuse(socket, 400, 'bad request');
      else socket.destroy();
    });
  }

  /** Takes a decrypted connection whose first bytes are an HTTP request. */
  take(socket: Duplex): void {
    this.http.emit('connection', socket);
    // The sniffer left it paused with the request's first bytes put back.
    socket.resume();
  }

  private pathOf(req: http.IncomingMessage): string {
    try {
      return new URL(req.url ?? '/', 'http://gateway').pathname;
    } catch {
      return req.url ?? '/';
    }
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const onPath = this.pathOf(req) === this.opts.path;
    const text = onPath
      ? 'this is a Tether tunnel endpoint: a connector reaches it with gateway: "wss://<this host><path>" (WebSocket upgrade required)\n'
      : 'not found\n';
    res.writeHead(onPath ? 426 : 404, {
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': Buffer.byteLength(text),
      ...(onPath ? { Upgrade: 'websocket' } : {}),
      Connection: 'close',
    });
    res.end(text);
  }

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const { log } = this.deps;
    const s = socket as Duplex & { remoteAddress?: string; remotePort?: number };
    const remote = { ip: s.remoteAddress ?? '', port: s.remotePort ?? 0 };
    const source = sourceOf(s);
    const path = this.pathOf(req);
    if (path !== this.opts.path) {
      log.info(
        { event: 'tunnel.websocket_not_found', source, path },
        `WebSocket upgrade for ${path.slice(0, 200)} refused: the tunnel path is ${this.opts.path}`,
      );
      refuse(socket, 404, `no WebSocket tunnel at ${path.slice(0, 200)}`);
      return;
    }
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      refuse(socket, 400, 'only WebSocket upgrades are accepted here');
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const stream = createWebSocketStream(ws, {
        readableHighWaterMark: 256 * 1024,
        writableHighWaterMark: 256 * 1024,
      });
      log.debug({ event: 'tunnel.websocket_connection', source }, 'WebSocket tunnel connection');
      this.deps.tunnel.accept(stream, remote);
    });
  }

  close(): void {
    this.http.close();
    this.wss.close();
  }
}
