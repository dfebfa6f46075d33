import { type AddressInfo, createServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket, type Server as TlsServer } from 'node:tls';
import type ssh2 from 'ssh2';
import type { Connection, TcpipBindInfo, TcpipRequestInfo } from 'ssh2';
import { formatHostPort, type HostPort } from '../config/host-port.js';
import { generateKeyPair } from '../core/ssh-keys.js';
import type { Logger } from '../log/index.js';
import { dialDestination } from '../tunnel/dial.js';
import { relay } from '../tunnel/pipe.js';
import { createSshServer, type SshServer } from '../tunnel/ssh-server.js';
import { describeTlsError, peerSubject, type TlsMaterial } from '../tunnel/tls-material.js';
import { OpenConnections } from './open-connections.js';

/** How long the tunnel side waits for a destination to accept a connection. */
const DIAL_TIMEOUT_MS = 10_000;

export interface TunnelServerDeps {
  logger: Logger;
  /** With it, peers must present a certificate chained to its root (mTLS). */
  tls?: TlsMaterial;
  /** SSH host key (OpenSSH PEM). Generated in memory when absent: TLS or trust authenticates us. */
  hostKey?: string;
}

/**
 * The side of a peer that other peers dial (`--tunnel-bind`). It speaks SSH, over TLS when
 * certificates are configured, and answers exactly three requests: listen on a port and send
 * its connections back (`tcpip-forward`), stop that (`cancel-tcpip-forward`), and dial a
 * destination (`direct-tcpip`). Everything else is refused.
 */
export class TunnelServer {
  private readonly log: Logger;
  private readonly ssh: SshServer;
  private readonly listener: NetServer | TlsServer;
  private readonly sockets = new Set<Socket>();
  private readonly sessions = new Set<InboundSession>();
  private readonly origins = new WeakMap<Socket, string>();
  private nextId = 1;
  private draining = false;
  /** The connections the sessions carry (what a draining stop waits for). */
  readonly open = new OpenConnections();

  constructor(deps: TunnelServerDeps) {
    this.log = deps.logger.child({ component: 'tunnel' });
    const hostKey = deps.hostKey ?? generateKeyPair().privateKey;
    this.ssh = createSshServer(
      {
        hostKey,
        keepaliveInterval: 15_000,
        keepaliveCountMax: 3,
      },
      (conn, info) => {
        const id = this.nextId++;
        const socket = [...this.sockets].find(
          (s) => s.remotePort === info.port && s.remoteAddress === info.ip,
        );
        const subject =
          socket && 'getPeerCertificate' in socket ? peerSubject(socket as TLSSocket) : undefined;
        const session = new InboundSession(
          conn,
          this.open,
          this.log.child({
            conn: id,
            peer: `${info.ip}:${info.port}`,
            ...(subject ? { cert: subject } : {}),
          }),
        );
        this.sessions.add(session);
        if (this.draining) session.drain();
        conn.on('close', () => this.sessions.delete(session));
      },
    );
    if (deps.tls) {
      const { ca, cert, key } = deps.tls;
      const server = createTlsServer({
        ca,
        cert,
        key,
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.2',
      });
      server.on('secureConnection', (socket) => this.accept(socket));
      // Remember where each TCP connection came from: after a failed handshake the TLS socket
      // no longer knows.
      server.on('connection', (raw: Socket) =>
        this.origins.set(raw, `${raw.remoteAddress}:${raw.remotePort}`),
      );
      server.on('tlsClientError', (err, socket) => {
        // A certificate that fails verification is dropped by node after the handshake; the
        // verification error is then on the socket, the handshake error is only the hang-up.
        const reason = socket.authorizationError
          ? describeTlsError(
              Object.assign(new Error(String(socket.authorizationError)), {
                code: socket.authorizationError,
              }),
              'server',
            )
          : describeTlsError(err, 'server');
        this.log.warn(
          { peer: this.origin(socket), reason },
          'refused a tunnel connection: TLS handshake failed',
        );
      });
      this.listener = server;
    } else {
      this.listener = createServer((socket) => this.accept(socket));
    }
  }

  private origin(socket: TLSSocket): string {
    if (socket.remoteAddress) return `${socket.remoteAddress}:${socket.remotePort}`;
    const raw = (socket as unknown as { _parent?: Socket })._parent;
    return (raw && this.origins.get(raw)) ?? 'unknown';
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.setKeepAlive(true, 15_000);
    this.ssh.inject(socket);
  }

  /** Starts listening; resolves with the bound address (port 0 picks one). */
  listen(bind: HostPort): Promise<HostPort> {
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(e);
      this.listener.once('error', onError);
      this.listener.listen({ host: bind.host === '' ? undefined : bind.host, port: bind.port }, () => {
        this.listener.off('error', onError);
        this.listener.on('error', (e) => this.log.error({ err: e.message }, 'tunnel listener error'));
        const a = this.listener.address() as AddressInfo;
        resolve({ host: a.address, port: a.port });
      });
    });
  }

  /**
   * The first step of a draining stop: no new peer sessions, no new listeners for peers, and
   * no new connections on any session; the open ones go on until close().
   */
  drain(): void {
    if (this.draining) return;
    this.draining = true;
    this.listener.close();
    for (const s of this.sessions) s.drain();
  }

  /** Stops listening and ends every session with its listeners and connections. */
  async close(): Promise<void> {
    for (const s of this.sessions) s.close();
    for (const s of this.sockets) s.destroy();
    if (this.listener.listening) await new Promise<void>((resolve) => this.listener.close(() => resolve()));
  }
}

/** One connected peer: its listeners and the connections they carry. */
class InboundSession {
  private readonly listeners = new Map<string, NetServer>();
  private readonly streams = new Set<Socket>();
  private closed = false;
  private draining = false;

  constructor(
    private readonly conn: Connection,
    private readonly open: OpenConnections,
    private readonly log: Logger,
  ) {
    conn.on('authentication', (ctx) => {
      // With mTLS the TLS layer has authenticated the peer; without it this is plain mode
      // (trusted networks only, announced at startup).
      ctx.accept();
    });
    conn.on('ready', () => this.log.info('peer connected'));
    conn.on('request', (accept, reject, name, info) => {
      if (name === 'tcpip-forward') this.onForward(info as TcpipBindInfo, accept, reject);
      else if (name === 'cancel-tcpip-forward') this.onCancelForward(info as TcpipBindInfo, accept);
      else {
        this.log.warn({ request: name }, 'refused a request the peer protocol does not use');
        reject?.();
      }
    });
    conn.on('tcpip', (accept, reject, info) => this.onDirect(info, accept, reject));
    conn.on('session', (_accept, reject) => {
      this.log.warn('refused a session channel: peers only carry TCP connections');
      reject();
    });
    conn.on('openssh.streamlocal', (_accept, reject) => reject());
    conn.on('error', (e) => this.log.debug({ err: e.message }, 'tunnel session error'));
    conn.on('close', () => {
      if (!this.closed) this.log.info('peer disconnected');
      this.cleanup();
    });
  }

  close(): void {
    this.conn.end();
    this.cleanup();
  }

  /** No new listeners or connections for this peer; the open connections go on. */
  drain(): void {
    this.draining = true;
    for (const l of this.listeners.values()) l.close();
    this.listeners.clear();
  }

  private cleanup(): void {
    this.closed = true;
    for (const l of this.listeners.values()) l.close();
    this.listeners.clear();
    for (const s of this.streams) s.destroy();
    this.streams.clear();
  }

  /** The peer asks us to listen on a port and carry its connections back (an exposure of type "local"). */
  private onForward(
    info: TcpipBindInfo,
    accept: ((port?: number) => void) | undefined,
    reject: (() => void) | undefined,
  ): void {
    const bind = formatHostPort({ host: info.bindAddr, port: info.bindPort });
    const log = this.log.child({ bind });
    const key = `${info.bindAddr}:${info.bindPort}`;
    if (this.draining) {
      log.warn('refused to listen: this peer is stopping');
      reject?.();
      return;
    }
    if (info.bindPort < 1 || info.bindPort > 65535) {
      log.warn('refused to listen: port must be from 1 to 65535');
      reject?.();
      return;
    }
    if (this.listeners.has(key)) {
      log.warn('refused to listen: this peer already exposes that port here');
      reject?.();
      return;
    }
    const server = createServer((socket) => this.carryBack(info, socket, log));
    server.once('error', (e: NodeJS.ErrnoException) => {
      log.warn({ err: e.message, code: e.code }, 'refused to listen for the peer');
      reject?.();
    });
    server.listen({ host: info.bindAddr === '' ? undefined : info.bindAddr, port: info.bindPort }, () => {
      if (this.closed || this.draining) {
        server.close();
        reject?.();
        return;
      }
      server.removeAllListeners('error');
      server.on('error', (e) => log.warn({ err: e.message }, 'listener error'));
      this.listeners.set(key, server);
      log.info('listening for the peer');
      accept?.(info.bindPort);
    });
  }

  private onCancelForward(info: TcpipBindInfo, accept: ((port?: number) => void) | undefined): void {
    const key = `${info.bindAddr}:${info.bindPort}`;
    const server = this.listeners.get(key);
    if (server) {
      server.close();
      this.listeners.delete(key);
      this.log.info(
        { bind: formatHostPort({ host: info.bindAddr, port: info.bindPort }) },
        'stopped listening',
      );
    }
    accept?.();
  }

  private carryBack(info: TcpipBindInfo, socket: Socket, log: Logger): void {
    this.streams.add(socket);
    this.open.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => this.streams.delete(socket));
    const from = `${socket.remoteAddress}:${socket.remotePort}`;
    this.conn.forwardOut(
      info.bindAddr,
      info.bindPort,
      socket.remoteAddress ?? '',
      socket.remotePort ?? 0,
      (err, ch) => {
        if (err) {
          log.warn(
            { from, err: err.message },
            'the peer refused a connection (its destination is unreachable?)',
          );
          socket.destroy();
          return;
        }
        log.debug({ from }, 'connection carried to the peer');
        relay(socket, ch, () => {});
      },
    );
  }

  /** The peer asks us to dial a destination (an exposure of type "remote"). */
  private onDirect(info: TcpipRequestInfo, accept: () => ssh2.ServerChannel, reject: () => void): void {
    const dest = formatHostPort({ host: info.destIP, port: info.destPort });
    if (this.draining) {
      this.log.info({ dest }, 'refused a connection for the peer: this peer is stopping');
      reject();
      return;
    }
    dialDestination(info.destIP, info.destPort, DIAL_TIMEOUT_MS).then(
      (socket) => {
        if (this.closed) {
          socket.destroy();
          return;
        }
        this.streams.add(socket);
        this.open.add(socket);
        socket.on('close', () => this.streams.delete(socket));
        this.log.debug({ dest }, 'dialled the destination for the peer');
        relay(socket, accept(), () => {});
      },
      (e: Error) => {
        this.log.warn({ dest, reason: e.message }, 'cannot dial the destination for the peer');
        reject();
      },
    );
  }
}
