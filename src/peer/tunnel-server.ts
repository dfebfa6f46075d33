import { type AddressInfo, createServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket, type Server as TlsServer } from 'node:tls';
import type ssh2 from 'ssh2';
import type { Connection, TcpipBindInfo, TcpipRequestInfo } from 'ssh2';
import { formatHostPort, type HostPort } from '../config/host-port.js';
import { type Clock, systemClock } from '../core/clock.js';
import { RefusalLog } from '../core/refusals.js';
import { generateKeyPair } from '../core/ssh-keys.js';
import type { Logger } from '../log/index.js';
import { dialDestination } from '../tunnel/dial.js';
import { relay } from '../tunnel/pipe.js';
import { normalizeIp } from '../tunnel/session-util.js';
import { createSshServer, type SshServer } from '../tunnel/ssh-server.js';
import { describeTlsError, peerSubject, type TlsMaterial } from '../tunnel/tls-material.js';
import { UnauthenticatedSlots } from '../tunnel/unauthenticated-slots.js';
import { OpenConnections } from './open-connections.js';

/** How long the tunnel side waits for a destination to accept a connection. */
const DIAL_TIMEOUT_MS = 10_000;

/**
 * What a caller of the tunnel port can make a peer hold. Connections not yet through the TLS and
 * SSH handshakes: this many in all, and from one address (the rest are closed at once, logged
 * once per burst); each must be through within the handshake deadline. A connected peer may ask
 * for this many listeners, and have this many connections carried for it at once.
 */
export const TUNNEL_BOUNDS = {
  maxHandshaking: 64,
  maxHandshakingPerSource: 16,
  handshakeTimeoutMs: 30_000,
  maxListenersPerPeer: 256,
  maxConnectionsPerPeer: 4096,
};

/** What one connected peer may hold, and where its refusals are logged. */
interface PeerLimits {
  /** The peer's address, which its refusals are counted by. */
  peer: string;
  maxListeners: number;
  maxConnections: number;
  refusals: RefusalLog;
}

export interface TunnelServerDeps {
  logger: Logger;
  /** With it, peers must present a certificate chained to its root (mTLS). */
  tls?: TlsMaterial;
  /** SSH host key (OpenSSH PEM). Generated in memory when absent: TLS or trust authenticates us. */
  hostKey?: string;
  clock?: Clock;
  /** TUNNEL_BOUNDS unless given (tests make them small). */
  bounds?: Partial<typeof TUNNEL_BOUNDS>;
}

/** A connection on its way through the handshakes: gives back its slot and clears its deadline. */
interface Handshaking {
  socket: Socket;
  release(): void;
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
  private readonly handshaking = new Map<string, Handshaking>();
  /** Connections this side closed before TLS was through (a bound, the deadline): already logged. */
  private readonly closedHere = new WeakSet<Socket>();
  private readonly bounds: typeof TUNNEL_BOUNDS;
  private readonly clock: Clock;
  private readonly refusals: RefusalLog;
  /** The handshake slots: in all and per source address, as the gateway's tunnel port counts them. */
  private readonly slots: UnauthenticatedSlots;
  private nextId = 1;
  private draining = false;
  /** The connections the sessions carry (what a draining stop waits for). */
  readonly open = new OpenConnections();

  constructor(deps: TunnelServerDeps) {
    this.log = deps.logger.child({ component: 'tunnel' });
    this.bounds = { ...TUNNEL_BOUNDS, ...deps.bounds };
    this.clock = deps.clock ?? systemClock;
    this.refusals = new RefusalLog(this.log, this.clock);
    this.slots = new UnauthenticatedSlots(this.bounds.maxHandshaking, this.bounds.maxHandshakingPerSource);
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
        conn.once('ready', () => this.handshakeDone(`${info.ip}:${info.port}`));
        const session = new InboundSession(
          conn,
          this.open,
          {
            peer: `${info.ip}:${info.port}`,
            maxListeners: this.bounds.maxListenersPerPeer,
            maxConnections: this.bounds.maxConnectionsPerPeer,
            refusals: this.refusals,
          },
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
      server.on('connection', (raw: Socket) => {
        this.origins.set(raw, `${raw.remoteAddress}:${raw.remotePort}`);
        this.admit(raw);
      });
      server.on('tlsClientError', (err, socket) => {
        const raw = (socket as unknown as { _parent?: Socket })._parent;
        if (raw && this.closedHere.has(raw)) return;
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
      this.listener = createServer((socket) => {
        if (this.admit(socket)) this.accept(socket);
      });
    }
  }

  /**
   * A new TCP connection takes a handshake slot, given back once its SSH session is ready (or it
   * closes); without a free slot, or not ready by the deadline, it is closed.
   */
  private admit(socket: Socket): boolean {
    const ip = normalizeIp(socket.remoteAddress);
    const key = `${socket.remoteAddress}:${socket.remotePort}`;
    const b = this.bounds;
    const refused = this.slots.refusal(ip);
    if (refused) {
      const bound =
        refused === 'max_unauthenticated'
          ? `too many connections in their handshake (${b.maxHandshaking})`
          : `too many connections in their handshake from ${ip} (${b.maxHandshakingPerSource})`;
      this.refusals.refuse('peer_handshakes', ip, { peer: ip }, `refused a tunnel connection: ${bound}`);
      this.closedHere.add(socket);
      socket.destroy();
      return false;
    }
    const giveBack = this.slots.take(ip);
    const timer = this.clock.setTimeout(() => {
      this.log.warn(
        { peer: key, handshake_timeout_ms: b.handshakeTimeoutMs },
        `closed a tunnel connection: no TLS and SSH handshake within ${b.handshakeTimeoutMs} ms`,
      );
      release();
      this.closedHere.add(socket);
      socket.destroy();
    }, b.handshakeTimeoutMs);
    const release = () => {
      this.clock.clearTimeout(timer);
      if (this.handshaking.get(key)?.socket === socket) this.handshaking.delete(key);
      giveBack();
    };
    this.handshaking.set(key, { socket, release });
    socket.once('close', release);
    return true;
  }

  private handshakeDone(key: string): void {
    this.handshaking.get(key)?.release();
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
    for (const h of [...this.handshaking.values()]) h.socket.destroy();
    if (this.listener.listening) await new Promise<void>((resolve) => this.listener.close(() => resolve()));
  }
}

/** One connected peer: its listeners and the connections they carry. */
class InboundSession {
  private readonly listeners = new Map<string, NetServer>();
  private readonly streams = new Set<Socket>();
  private closed = false;
  private draining = false;
  /** Listeners asked for and not listening yet (they count against maxListeners). */
  private starting = 0;
  /** Destinations being dialled for the peer (they count against maxConnections). */
  private dialing = 0;

  constructor(
    private readonly conn: Connection,
    private readonly open: OpenConnections,
    private readonly limits: PeerLimits,
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
    const { maxListeners } = this.limits;
    if (this.listeners.size + this.starting >= maxListeners) {
      log.warn(
        `refused to listen: this peer already has ${maxListeners} ports here, the most a peer may have`,
      );
      reject?.();
      return;
    }
    this.starting++;
    const server = createServer((socket) => this.carryBack(info, socket, log));
    server.once('error', (e: NodeJS.ErrnoException) => {
      this.starting--;
      log.warn({ err: e.message, code: e.code }, 'refused to listen for the peer');
      reject?.();
    });
    server.listen({ host: info.bindAddr === '' ? undefined : info.bindAddr, port: info.bindPort }, () => {
      this.starting--;
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

  /** Counts a connection carried for the peer, here and in the server's total, until it closes. */
  private track(socket: Socket): void {
    this.streams.add(socket);
    this.open.add(socket);
    socket.on('close', () => this.streams.delete(socket));
  }

  /** Whether one more connection would pass the peer's bound (refused and logged if so). */
  private full(what: string): boolean {
    const max = this.limits.maxConnections;
    if (this.streams.size + this.dialing < max) return false;
    this.limits.refusals.refuse(
      'peer_connections',
      this.limits.peer,
      { peer: this.limits.peer },
      `refused ${what}: this peer has ${max} connections open, the most a peer may have`,
    );
    return true;
  }

  private carryBack(info: TcpipBindInfo, socket: Socket, log: Logger): void {
    if (this.full('a connection to carry to the peer')) {
      socket.destroy();
      return;
    }
    this.track(socket);
    socket.on('error', () => {});
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
    if (this.full(`a connection to ${dest} for the peer`)) {
      reject();
      return;
    }
    this.dialing++;
    dialDestination(info.destIP, info.destPort, DIAL_TIMEOUT_MS)
      .finally(() => this.dialing--)
      .then(
        (socket) => {
          if (this.closed) {
            socket.destroy();
            return;
          }
          this.track(socket);
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
