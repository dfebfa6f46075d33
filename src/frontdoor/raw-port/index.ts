import net from 'node:net';
import type { ForwardRegistry } from '../../core/forward-registry.js';
import type { Logger } from '../../log/index.js';
import type { ConnectionBroker } from '../../tunnel/broker.js';
import type { LeaseBinder, RelayedOrigin } from '../../tunnel/lease-binder.js';
import { type ListenFn, listenOn } from '../../tunnel/listen.js';
import { coalesceWrites } from '../../tunnel/pipe.js';
import type { ProxyProtocolGate } from '../../tunnel/proxy-header.js';

/**
 * Raw-port front door: one TCP listener per live lease, on `forwards.bind`. Each accepted
 * connection becomes a `forwarded-tcpip` channel to a connector serving that lease. It is the
 * tunnel's lease-binding port (`LeaseBinder`): the tunnel opens and closes ports through it.
 */
export class LeaseListeners implements LeaseBinder {
  private readonly servers = new Map<number, net.Server>();
  private readonly sockets = new Set<net.Socket>();
  /** When a lease port last accepted a connection (ms since the epoch; 0: never). */
  lastAcceptAt = 0;
  private draining = false;
  /**
   * Set in a cluster: for a connection relayed by another member, the caller's address the
   * relay names (the member's own address otherwise); `undefined` when the connection is not
   * from a member. Rejects when a member's relay header is refused (the connection is closed).
   */
  relayOrigin?: (socket: net.Socket, port: number) => Promise<RelayedOrigin | undefined> | undefined;
  /**
   * Set in a worker (`workers` > 1): lease ports are listened on through the primary, which
   * passes each accepted connection to one of the workers listening on that port; a worker
   * listens only while a forward here serves it (or, in a cluster, another member's forward
   * there is relayed from here): never for a forward another worker serves.
   */
  sharedPorts = false;
  /**
   * Set in a worker under `worker_accept: primary`: opens a lease port through the primary, which
   * passes this worker the port's connections (spread-listeners.ts) while a forward here serves it.
   */
  listen?: ListenFn;

  constructor(
    private readonly bindHost: string,
    private readonly registry: ForwardRegistry,
    private readonly log: Logger,
    private readonly broker: ConnectionBroker,
    /** PROXY protocol on the lease ports (`forwards.proxy_protocol`). */
    private readonly proxyGate?: Pick<ProxyProtocolGate, 'guard'>,
  ) {}

  isOpen(port: number): boolean {
    return this.servers.has(port);
  }

  ports(): number[] {
    return [...this.servers.keys()];
  }

  /** Starts listening on a lease port (idempotent). Rejects with a readable reason when it cannot. */
  async open(port: number): Promise<void> {
    if (this.servers.has(port)) return;
    if (this.draining) throw new Error('the gateway is shutting down');
    const server = net.createServer({ noDelay: true, allowHalfOpen: true }, (socket) =>
      this.guarded(port, socket),
    );
    this.proxyGate?.guard(server);
    this.servers.set(port, server);
    try {
      await (this.listen ?? listenOn)(server, {
        host: this.bindHost,
        port,
        key: `lease:${port}`,
        exclusive: !this.sharedPorts,
      });
    } catch (e) {
      this.servers.delete(port);
      const code = (e as NodeJS.ErrnoException).code;
      throw new Error(
        code === 'EADDRINUSE'
          ? `port ${port} is in use by another program on the gateway host`
          : `cannot listen on ${this.bindHost}:${port}: ${code ?? String(e)}`,
      );
    }
    server.on('error', (err) => this.log.error({ err, port }, 'lease listener failed'));
  }

  /**
   * Stops listening on a lease port, unless a forward here or another cluster member's (relayed
   * from here) still uses it; another worker's forward does not keep it (see `sharedPorts`).
   */
  close(port: number): void {
    const s = this.servers.get(port);
    if (!s) return;
    if (this.registry.byPort(port) || this.registry.relaysPort(port)) return;
    this.servers.delete(port);
    s.close();
  }

  /**
   * Drain: every lease port stops listening; connections already accepted carry on (closeAll
   * cuts them at the end). No port opens after this.
   */
  stopAccepting(): number {
    this.draining = true;
    const n = this.servers.size;
    for (const s of this.servers.values()) s.close();
    this.servers.clear();
    return n;
  }

  async closeAll(): Promise<void> {
    const all = [...this.servers.values()];
    this.servers.clear();
    for (const s of this.sockets) s.destroy();
    await Promise.all(all.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }

  /**
   * A connection another worker relayed here (its header named the lease port and the caller):
   * served by this worker's forward on that port, never relayed on again.
   */
  acceptRelayed(port: number, socket: net.Socket, origin: RelayedOrigin): void {
    this.guarded(port, socket, origin);
  }

  /**
   * The connection boundary: an exception while handling one connection is logged and that
   * connection closed; it never ends the process, and the next connection is served as usual.
   */
  private guarded(port: number, socket: net.Socket, relayedFrom?: RelayedOrigin): void {
    this.lastAcceptAt = Date.now();
    const crashed = (err: unknown) => {
      this.log.error(
        { event: 'raw_port.internal_error', port, source: socket.remoteAddress, err },
        `a connection to lease port ${port} failed inside the gateway: ${err instanceof Error ? err.message : String(err)}; closed it`,
      );
      socket.destroy();
    };
    try {
      this.onConnection(port, socket, relayedFrom)?.catch(crashed);
    } catch (err) {
      crashed(err);
    }
  }

  private onConnection(
    port: number,
    socket: net.Socket,
    relayedFrom?: RelayedOrigin,
  ): Promise<void> | undefined {
    const f = relayedFrom
      ? this.registry.byPort(port)
      : (this.registry.byPort(port) ?? this.registry.remoteByPort(port));
    if (!f) {
      socket.destroy();
      return undefined;
    }
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => {});
    coalesceWrites(socket);
    socket.pause();
    const direct = { address: socket.remoteAddress ?? '127.0.0.1', port: socket.remotePort ?? 0 };
    const splice = (
      { acceptedReply, refusedReply, ...origin }: RelayedOrigin,
      relayed?: 'member' | 'worker',
    ) =>
      this.broker
        .splice(
          {
            tenant: f.tenant,
            label: f.label,
            origin,
            frontDoor: 'raw_port',
            port,
            relayed,
          },
          socket,
          // a relaying member waits for this before it sends the caller's bytes (cluster relay)
          acceptedReply ? { accepted: (caller) => caller.write(acceptedReply) } : {},
        )
        .then((r) => {
          if (!('refused' in r)) return;
          // refused: the broker logged why; the caller sees its connection closed, and a relaying
          // worker or member is told a refusal that is the caller's answer
          const reply = refusedReply?.(r.refused);
          if (reply) socket.end(reply, () => socket.destroy());
          else socket.destroy();
        });
    if (relayedFrom) return splice(relayedFrom, 'worker');
    const relayed = this.relayOrigin?.(socket, port);
    if (!relayed) return splice(direct);
    return relayed.then(
      (origin) => (socket.destroyed ? undefined : origin ? splice(origin, 'member') : splice(direct)),
      (err: unknown) => {
        this.log.warn(
          {
            event: 'cluster.relay_refused',
            port,
            source: `${direct.address}:${direct.port}`,
            reason: String((err as Error).message ?? err),
          },
          `refused a relayed connection to lease port ${port}: ${(err as Error).message ?? String(err)}`,
        );
        socket.destroy();
      },
    );
  }
}
