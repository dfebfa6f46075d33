import net from 'node:net';
import ssh2, { type Connection } from 'ssh2';
import type { Logger } from '../../log/index.js';
import { type ConnectionDeps, ProxyConnection } from './connection.js';

const { Server } = ssh2;

export interface SshProxyServerOptions {
  hostKey: string;
  ident: string;
  keepaliveInterval: number;
  keepaliveCountMax: number;
  maxUnauthenticated: number;
}

/** The SSH front door's listener: one ssh2 Server, one ProxyConnection per client. */
export class SshProxyServer {
  private readonly ssh: InstanceType<typeof Server>;
  private netServer?: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly live = new Set<ProxyConnection>();
  /** Sockets that have not sent an SSH identification yet. */
  private readonly silent = new Set<net.Socket>();
  private unauthenticated = 0;
  private closing = false;
  private readonly log: Logger;

  constructor(
    private readonly opts: SshProxyServerOptions,
    private readonly deps: ConnectionDeps,
  ) {
    this.log = deps.log;
    this.ssh = new Server(
      {
        hostKeys: [opts.hostKey],
        ident: opts.ident,
        keepaliveInterval: opts.keepaliveInterval,
        keepaliveCountMax: opts.keepaliveCountMax,
        highWaterMark: 256 * 1024,
      } as ConstructorParameters<typeof Server>[0],
      () => {},
    );
    this.ssh.on('connection', (client: Connection, info: { ip: string; port: number }) =>
      this.onClient(client, info),
    );
  }

  async listen(host: string, port: number): Promise<net.AddressInfo> {
    const srv = net.createServer({ noDelay: true, pauseOnConnect: true }, (s) => this.accept(s));
    this.netServer = srv;
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen({ host, port }, () => {
        srv.off('error', reject);
        resolve();
      });
    });
    srv.on('error', (err) => this.log.error({ err }, 'ssh proxy listener failed'));
    return srv.address() as net.AddressInfo;
  }

  private accept(socket: net.Socket): void {
    if (this.closing || this.unauthenticated >= this.opts.maxUnauthenticated) {
      this.log.warn(
        {
          event: 'ssh_proxy.refused',
          audit: true,
          source: socket.remoteAddress,
          reason: this.closing ? 'shutting down' : 'too many unauthenticated connections',
        },
        'ssh proxy connection refused',
      );
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => {});
    // A client that never even sends its SSH identification is closed after the handshake timeout
    // (from then on ProxyConnection's own timer, which can tell the user why, takes over).
    this.silent.add(socket);
    const timer = this.deps.clock.setTimeout(() => {
      if (this.silent.delete(socket)) socket.destroy();
    }, this.deps.settings.handshakeTimeout);
    socket.once('close', () => {
      this.silent.delete(socket);
      this.deps.clock.clearTimeout(timer);
    });
    (this.ssh as unknown as { injectSocket(s: net.Socket): void }).injectSocket(socket);
    socket.resume();
  }

  private onClient(client: Connection, info: { ip: string; port: number }): void {
    const sock = (client as unknown as { _sock?: net.Socket })._sock;
    if (sock) this.silent.delete(sock);
    this.unauthenticated++;
    let counted = true;
    const uncount = () => {
      if (counted) {
        counted = false;
        this.unauthenticated--;
      }
    };
    const conn = new ProxyConnection(client, { ip: info.ip, port: info.port }, this.deps, uncount);
    this.live.add(conn);
    client.on('close', () => {
      uncount();
      this.live.delete(conn);
    });
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
