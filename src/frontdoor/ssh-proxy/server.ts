import net from 'node:net';
import type { Connection } from 'ssh2';
import type { SshAlgorithmLists } from '../../config/ssh-algorithms.js';
import { RefusalLog } from '../../core/refusals.js';
import type { Logger } from '../../log/index.js';
import { type ListenFn, listenOn } from '../../tunnel/listen.js';
import type { ProxyProtocolGate } from '../../tunnel/proxy-header.js';
import { normalizeIp } from '../../tunnel/session-util.js';
import { createSshServer, type SshServer } from '../../tunnel/ssh-server.js';
import { socketOf } from '../../tunnel/ssh2-adapter.js';
import { type SlotKeeper, slotFor, UnauthenticatedSlots } from '../../tunnel/unauthenticated-slots.js';
import { type ConnectionDeps, ProxyConnection } from './connection.js';

export interface SshProxyServerOptions {
  hostKey: string;
  algorithms?: SshAlgorithmLists;
  ident: string;
  keepaliveInterval: number;
  keepaliveCountMax: number;
  maxUnauthenticated: number;
  /** Of those, how many one source address may hold. */
  maxUnauthenticatedPerSource: number;
  /** Where the two bounds above are counted: under `workers`, the primary (default: here). */
  slots?: SlotKeeper;
}

/** The SSH front door's listener: one ssh2 Server, one ProxyConnection per client. */
export class SshProxyServer {
  private readonly ssh: SshServer;
  private netServer?: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly live = new Set<ProxyConnection>();
  /** Sockets that have not sent an SSH identification yet. */
  private readonly silent = new Set<net.Socket>();
  /** Gives a socket's unauthenticated slot back (once: at login or close). */
  private readonly uncounters = new Map<net.Socket, () => void>();
  /**
   * Connections not logged in yet, counted from the moment they are accepted (a silent socket and
   * one that only sent its identification count too), in all and per source address.
   */
  private readonly slots: SlotKeeper;
  private closing = false;
  private readonly log: Logger;
  private readonly refusals: RefusalLog;

  constructor(
    opts: SshProxyServerOptions,
    private readonly deps: ConnectionDeps,
  ) {
    this.log = deps.log;
    this.refusals = new RefusalLog(deps.log, deps.clock);
    this.slots =
      opts.slots ?? new UnauthenticatedSlots(opts.maxUnauthenticated, opts.maxUnauthenticatedPerSource);
    // The connection boundary: an exception while setting up one client is logged and that
    // client dropped; it never ends the process.
    this.ssh = createSshServer(
      {
        hostKey: opts.hostKey,
        algorithms: opts.algorithms,
        ident: opts.ident,
        keepaliveInterval: opts.keepaliveInterval,
        keepaliveCountMax: opts.keepaliveCountMax,
        highWaterMark: 256 * 1024,
      },
      (client, info) => {
        try {
          this.onClient(client, info);
        } catch (err) {
          this.crashed(err, info.ip);
          client.end();
        }
      },
    );
  }

  async listen(
    host: string,
    port: number,
    proxyGate?: Pick<ProxyProtocolGate, 'guard'>,
    listen: ListenFn = listenOn,
  ): Promise<net.AddressInfo> {
    const srv = net.createServer({ noDelay: true, pauseOnConnect: true }, (s) => {
      try {
        this.accept(s);
      } catch (err) {
        this.crashed(err, s.remoteAddress);
        s.destroy();
      }
    });
    proxyGate?.guard(srv);
    this.netServer = srv;
    const a = await listen(srv, { host, port, key: 'ssh_proxy' });
    srv.on('error', (err) => this.log.error({ err }, 'ssh proxy listener failed'));
    return a;
  }

  private crashed(err: unknown, source: string | undefined): void {
    this.log.error(
      { event: 'ssh_proxy.internal_error', source, err },
      `an SSH front-door connection failed inside the gateway: ${err instanceof Error ? err.message : String(err)}; closed it`,
    );
  }

  private accept(socket: net.Socket): void {
    const ip = normalizeIp(socket.remoteAddress);
    if (this.closing) {
      socket.destroy();
      return;
    }
    slotFor(
      this.slots,
      socket,
      ip,
      {
        closing: () => this.closing,
        refusals: this.refusals,
        key: `ssh_proxy\0${ip}`,
        fields: { front_door: 'ssh_proxy', source: ip, audit: true },
        what: 'ssh proxy connection refused',
      },
      (release) => {
        try {
          this.admit(socket, release);
        } catch (err) {
          this.crashed(err, socket.remoteAddress);
          socket.destroy();
        }
      },
    );
  }

  /** Speaks SSH on a connection that holds its unauthenticated slot (`uncount` gives it back). */
  private admit(socket: net.Socket, uncount: () => void): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    this.uncounters.set(socket, uncount);
    // A client that never even sends its SSH identification is closed after the handshake timeout
    // (from then on ProxyConnection's own timer, which can tell the user why, takes over).
    this.silent.add(socket);
    const timer = this.deps.clock.setTimeout(() => {
      if (this.silent.delete(socket)) socket.destroy();
    }, this.deps.settings.handshakeTimeout);
    socket.once('close', () => {
      this.silent.delete(socket);
      this.deps.clock.clearTimeout(timer);
      uncount();
      this.uncounters.delete(socket);
    });
    // ssh2 resumes it once its data listener is on (see TunnelServer.start)
    this.ssh.inject(socket);
  }

  private onClient(client: Connection, info: { ip: string; port: number }): void {
    const sock = socketOf(client) as net.Socket | undefined;
    if (sock) this.silent.delete(sock);
    const uncount = (sock && this.uncounters.get(sock)) || (() => {});
    const conn = new ProxyConnection(
      client,
      { ip: info.ip, port: info.port },
      { ...this.deps, refusals: this.refusals },
      uncount,
    );
    this.live.add(conn);
    client.on('close', () => {
      uncount();
      this.live.delete(conn);
    });
  }

  /** Drain: stops listening; connections already open carry on. */
  stopAccepting(): void {
    this.netServer?.close();
  }

  async close(): Promise<void> {
    this.closing = true;
    const srv = this.netServer;
    const closed = srv ? new Promise<void>((r) => srv.close(() => r())) : Promise.resolve();
    for (const c of this.live) c.close(11, 'the gateway is shutting down');
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}
