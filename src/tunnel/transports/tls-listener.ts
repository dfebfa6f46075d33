/**
 * A TLS listener for tunnels (tunnel.tls, tunnel.websocket, or both on one port such as 443).
 *
 * Before TLS: a ClientHello goes on to the TLS handshake; plain SSH or plain HTTP sent to this
 * port by mistake gets a message it can show (an SSH pre-identification line, an HTTP answer)
 * and is closed. After TLS: the decrypted first bytes decide: "SSH-" is a raw TLS tunnel,
 * an HTTP request goes to the WebSocket endpoint. The same SSH server takes both, so tenants,
 * keys, quotas and leases behave as on the plain SSH port.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { TetherError } from '../../errors/index.js';
import type { Logger } from '../../log/index.js';
import { type ListenFn, listenOn } from '../listen.js';
import { readPemFile } from '../tls-material.js';
import { classify, peekFirstChunk, sourceOf } from './sniff.js';
import { rawHttpAnswer, WebSocketTunnels } from './websocket.js';

/** What the listener hands connections to: the gateway's TunnelServer. */
export interface TunnelAcceptor {
  accept(socket: net.Socket | Duplex, remote?: { ip: string; port: number }): void;
}

export interface TlsListenerOptions {
  listen: { host: string; port: number };
  /** PEM files. */
  cert: string;
  key: string;
  /** Where cert and key come from in gateway.yaml, for messages ("tunnel.tls"). */
  configPath: string;
  /** Raw TLS tunnels (tunnel.tls) on this listener. */
  raw: boolean;
  /** The WebSocket tunnel path (tunnel.websocket) on this listener. */
  websocketPath?: string;
  /** TLS handshake, and the first bytes after it, must arrive within this time (ms). */
  handshakeTimeout: number;
}

function readPem(file: string, what: string): Buffer {
  return readPemFile(file, { what, code: 'CONFIG_INVALID' });
}

/** An SSH client shows lines sent before the identification string (RFC 4253 4.2). */
function sshRefusal(text: string): string {
  return `tether: ${text}\r\nSSH-2.0-Tether_refused\r\n`;
}

export class TunnelTlsListener {
  private readonly netServer: net.Server;
  private readonly tlsServer: tls.Server;
  private readonly ws: WebSocketTunnels | undefined;
  private readonly log: Logger;
  /** Connections not handed to SSH yet (sniffing, TLS handshake). */
  private readonly pending = new Set<Duplex>();
  private closing = false;

  constructor(
    private readonly opts: TlsListenerOptions,
    private readonly deps: { tunnel: TunnelAcceptor; log: Logger; listen?: ListenFn },
  ) {
    this.log = deps.log;
    const cert = readPem(opts.cert, `${opts.configPath}.cert`);
    const key = readPem(opts.key, `${opts.configPath}.key`);
    try {
      tls.createSecureContext({ cert, key });
    } catch (e) {
      throw new TetherError(
        'CONFIG_INVALID',
        `${opts.configPath}: the certificate ${opts.cert} and key ${opts.key} cannot be used: ${(e as Error).message}`,
        { status: 400 },
      );
    }
    this.tlsServer = tls.createServer({
      cert,
      key,
      minVersion: 'TLSv1.2',
      handshakeTimeout: opts.handshakeTimeout,
    });
    this.tlsServer.on('secureConnection', (s: tls.TLSSocket) => void this.onSecure(s));
    this.tlsServer.on('tlsClientError', (err: Error & { code?: string; reason?: string }, s) => {
      this.log.info(
        {
          event: 'tunnel.tls_handshake_failed',
          source: sourceOf(s),
          reason: err.reason ?? err.code ?? err.message,
        },
        `TLS handshake failed: ${err.reason ?? err.message}`,
      );
    });
    this.ws = opts.websocketPath
      ? new WebSocketTunnels(
          { path: opts.websocketPath, requestTimeout: opts.handshakeTimeout },
          { tunnel: deps.tunnel, log: deps.log },
        )
      : undefined;
    this.netServer = net.createServer({ pauseOnConnect: true, noDelay: true }, (s) => void this.onRaw(s));
  }

  async listen(): Promise<net.AddressInfo> {
    const { host, port } = this.opts.listen;
    return (this.deps.listen ?? listenOn)(this.netServer, { host, port, key: this.opts.configPath });
  }

  private track(s: Duplex): void {
    this.pending.add(s);
    s.once('close', () => this.pending.delete(s));
  }

  /** A raw connection on this listener's port. */
  private async onRaw(socket: net.Socket): Promise<void> {
    socket.on('error', () => {});
    if (this.closing) {
      socket.destroy();
      return;
    }
    this.track(socket);
    const first = await peekFirstChunk(socket, this.opts.handshakeTimeout);
    if (!('chunk' in first)) {
      socket.destroy();
      return;
    }
    const kind = classify(first.chunk);
    if (kind === 'tls') {
      this.pending.delete(socket);
      this.takeTls(socket);
      return;
    }
    const source = sourceOf(socket);
    if (kind === 'ssh') {
      this.log.warn(
        { event: 'tunnel.plain_ssh_on_tls_port', source },
        'plain SSH arrived on a TLS tunnel port: refused (the connector must use tls:// or wss://)',
      );
      const how = this.opts.raw
        ? 'gateway: "tls://host:port"'
        : `gateway: "wss://host:port${this.opts.websocketPath}"`;
      socket.end(sshRefusal(`this port expects TLS; in connect.yaml use ${how}`));
    } else if (kind === 'http') {
      this.log.info(
        { event: 'tunnel.plain_http_on_tls_port', source },
        'plain HTTP arrived on a TLS tunnel port: refused',
      );
      socket.end(rawHttpAnswer(400, 'this port speaks TLS: use https:// or wss://'));
    } else {
      this.log.info({ event: 'tunnel.not_tls', source }, 'a connection that is not TLS was closed');
      socket.destroy();
      return;
    }
    setTimeout(() => socket.destroy(), 1000).unref();
  }

  /**
   * Takes a connection whose first bytes are a TLS ClientHello (from this port, or from the
   * plain SSH port when it sniffs TLS).
   */
  takeTls(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    // Not tracked during the handshake: tls.Server's handshake timeout bounds it.
    this.tlsServer.emit('connection', socket);
  }

  private async onSecure(ts: tls.TLSSocket): Promise<void> {
    ts.on('error', () => {});
    this.track(ts);
    const source = sourceOf(ts);
    const first = await peekFirstChunk(ts, this.opts.handshakeTimeout);
    if ('closed' in first) {
      this.log.info(
        { event: 'tunnel.tls_closed_early', source },
        'a client closed the connection right after the TLS handshake (did it refuse this certificate?)',
      );
      ts.destroy();
      return;
    }
    const kind = 'chunk' in first ? classify(first.chunk) : 'timeout';
    if (kind === 'ssh' || (kind === 'timeout' && this.opts.raw)) {
      if (this.opts.raw) {
        this.pending.delete(ts);
        this.log.debug({ event: 'tunnel.tls_connection', source }, 'TLS tunnel connection');
        this.deps.tunnel.accept(ts);
        return;
      }
      this.log.warn(
        { event: 'tunnel.tls_not_configured', source },
        'an SSH client connected over raw TLS to a port that carries WebSocket tunnels only: refused',
      );
      ts.end(
        sshRefusal(
          `this port carries WebSocket tunnels only; in connect.yaml use gateway: "wss://host:port${this.opts.websocketPath}"`,
        ),
      );
    } else if (kind === 'http') {
      if (this.ws) {
        this.pending.delete(ts);
        this.ws.take(ts);
        return;
      }
      this.log.info(
        { event: 'tunnel.websocket_not_configured', source },
        'an HTTP request arrived on the TLS tunnel port, but tunnel.websocket is not configured here',
      );
      ts.end(
        rawHttpAnswer(
          404,
          'no WebSocket tunnel on this port (it carries TLS tunnels: gateway: "tls://host:port")',
        ),
      );
    } else {
      this.log.info(
        { event: 'tunnel.tls_unknown_protocol', source },
        'neither SSH nor HTTP inside TLS: closed',
      );
      ts.destroy();
      return;
    }
    setTimeout(() => ts.destroy(), 1000).unref();
  }

  /** Stops listening and drops connections not handed over yet (tunnel sessions end with the tunnel server). */
  async close(): Promise<void> {
    this.closing = true;
    this.netServer.close();
    this.ws?.close();
    for (const s of this.pending) s.destroy();
  }
}
