import net from 'node:net';
import type { Duplex } from 'node:stream';
import ssh2, { type AuthContext, type Connection } from 'ssh2';
import type { SshAlgorithmLists } from '../config/ssh-algorithms.js';
import type { ForwardAuthorizer } from '../core/authorization.js';
import type { Clock } from '../core/clock.js';
import type { ForwardRegistry } from '../core/forward-registry.js';
import { TENANT_ID } from '../core/ids.js';
import { KeyedMutex } from '../core/keyed-mutex.js';
import { RefusalLog } from '../core/refusals.js';
import { fingerprintOf } from '../core/ssh-keys.js';
import type { TenantService } from '../core/tenants.js';
import type { FailureThrottle } from '../core/throttle.js';
import type { Logger } from '../log/index.js';
import type { RepoMeta, Store } from '../store/types.js';
import { ENROLL_USER } from './control-protocol.js';
import { runEnrollSession } from './enroll-session.js';
import type { LeaseBinder } from './lease-binder.js';
import { type ListenAt, type ListenFn, listenOn } from './listen.js';
import type { ManagedHooks } from './managed-control.js';
import { coalesceWrites } from './pipe.js';
import type { ProxyProtocolGate } from './proxy-header.js';
import { readIntoRegions } from './region-read.js';
import { destroySocket, normalizeIp } from './session-util.js';
import type { SourceAllowlists } from './source-allowlists.js';
import { createSshServer, type SshServer } from './ssh-server.js';
import { socketOf } from './ssh2-adapter.js';
import { runTenantSession, type SessionBounds, type TenantSessionDeps } from './tenant-session.js';
import { routePlainPort } from './transports/sniff.js';
import { type SlotKeeper, slotFor, UnauthenticatedSlots } from './unauthenticated-slots.js';
import { channelWindowOptions, DEFAULT_MAX_WINDOW } from './windows.js';

const { utils } = ssh2;

export interface TunnelServerOptions {
  hostKey: string;
  /** SSH algorithms offered (default: the hardened lists of config/ssh-algorithms.ts). */
  algorithms?: SshAlgorithmLists;
  keepaliveInterval: number;
  keepaliveCountMax: number;
  authTimeout: number;
  maxUnauthenticated: number;
  /** Connections from one source address that have not logged in yet (below `maxUnauthenticated`). */
  maxUnauthenticatedPerSource: number;
  /** Where the two bounds above are counted: under `workers`, the primary (default: here). */
  slots?: SlotKeeper;
  /** Bounds on what one logged-in session may make the gateway hold. */
  session: SessionBounds;
  version: string;
  nodeId?: string;
  /** Ceiling of each channel's adaptive receive window (bytes); `tunnel.max_window`. */
  maxWindow?: number;
}

export interface TunnelServerDeps {
  store: Store;
  tenants: TenantService;
  authorizer: ForwardAuthorizer;
  registry: ForwardRegistry;
  /** Binds and unbinds lease ports (the raw-port front door). */
  leasePorts: LeaseBinder;
  authThrottle: FailureThrottle;
  clock: Clock;
  log: Logger;
  /** Logs bound refusals once per burst; built from `log` and `clock` when not given. */
  refusals?: RefusalLog;
  /** PROXY protocol on the plain SSH port: the caller's address before anything else reads it. */
  proxyGate?: Pick<ProxyProtocolGate, 'guard'>;
  /** Source-address allowlists: a tenant's `tunnel_from` bounds where its connectors log in from. */
  allowlists?: Pick<SourceAllowlists, 'tunnelRefusal'>;
  /** Called when a forward's metadata arrives or changes (persist it). */
  onRepoMeta?: (tenant: string, label: string, meta: RepoMeta) => void;
  /** Managed repositories on the control channel (gateway/index.ts builds them). */
  managed?: ManagedHooks;
  /** Opens the tunnel port (and the transports' ports): by default itself (see ListenFn). */
  listen?: ListenFn;
}

/** The gateway's SSH endpoint for connectors: auth, forwards, control channel. */
export class TunnelServer {
  private readonly ssh: SshServer;
  private readonly netServers: net.Server[] = [];
  private readonly sockets = new Set<net.Socket | Duplex>();
  /** Every socket the plain port accepted, until it closes (close() ends those still sniffed too). */
  private readonly arrived = new Set<net.Socket>();
  private readonly mutex = new KeyedMutex();
  /**
   * Connections not authenticated yet, from the moment they are accepted: one that never even
   * sends its SSH identification counts against the cap and meets the auth timeout too.
   */
  private readonly pending = new Map<net.Socket | Duplex, PendingEntry>();
  /**
   * Slots of connections not logged in yet, in all and per source address: taken when the
   * connection arrives (before the first-bytes sniff), given back at login or close.
   */
  private readonly slots: SlotKeeper;
  private readonly refusals: RefusalLog;
  /** What every tenant session is given (built at the first login). */
  private sessionDeps: TenantSessionDeps | undefined;
  private closing = false;
  /** Takes TLS that arrives on the plain SSH port; set by the TLS transport (src/tunnel/transports). */
  tlsOnSshPort: ((socket: net.Socket) => void) | undefined;

  constructor(
    private readonly opts: TunnelServerOptions,
    private readonly deps: TunnelServerDeps,
  ) {
    this.refusals = deps.refusals ?? new RefusalLog(deps.log, deps.clock);
    this.slots =
      opts.slots ?? new UnauthenticatedSlots(opts.maxUnauthenticated, opts.maxUnauthenticatedPerSource);
    this.ssh = createSshServer(
      {
        hostKey: opts.hostKey,
        algorithms: opts.algorithms,
        ident: `Tether_${opts.version}`,
        keepaliveInterval: opts.keepaliveInterval,
        keepaliveCountMax: opts.keepaliveCountMax,
        highWaterMark: 256 * 1024,
        extra: channelWindowOptions({ maxWindow: opts.maxWindow ?? DEFAULT_MAX_WINDOW }),
      },
      (client, info) => this.onClient(client, info),
    );
  }

  /** Listens for plain SSH on host:port (0 = any free port). */
  async listen(host: string, port: number): Promise<net.AddressInfo> {
    const srv = net.createServer({ noDelay: true, pauseOnConnect: true }, (s) => {
      this.arrived.add(s);
      s.once('close', () => this.arrived.delete(s));
      // the auth timeout counts from here: the first-bytes sniff is part of the time to log in
      const at = this.deps.clock.now();
      this.reserve(s, s.remoteAddress, (slot) => {
        s.once('close', slot.release);
        const tls = this.tlsOnSshPort;
        void routePlainPort(s, {
          ssh: (x) => {
            s.off('close', slot.release);
            this.accept(x, undefined, at, slot);
          },
          // the TLS transport counts its own handshakes once it hands the stream over
          tls: tls
            ? (x) => {
                slot.release();
                tls(x);
              }
            : undefined,
          log: this.deps.log,
        });
      });
    });
    this.deps.proxyGate?.guard(srv);
    this.netServers.push(srv);
    return this.openListener(srv, { host, port, key: 'tunnel' });
  }

  /** Opens a listener that takes connector logins (this port, the TLS and WebSocket transports'). */
  openListener(server: net.Server, at: ListenAt): Promise<net.AddressInfo> {
    return (this.deps.listen ?? listenOn)(server, { ...at, logins: true });
  }

  /**
   * Takes an unauthenticated slot for a connection from `rawIp` (the global `maxUnauthenticated`
   * and the per-source `maxUnauthenticatedPerSource`) and calls `then` with it. A connection
   * refused (logged once per burst), gone while the slot was asked for (under `workers` it is the
   * primary's answer), or met by the drain meanwhile is closed instead.
   */
  private reserve(socket: net.Socket | Duplex, rawIp: string | undefined, then: (slot: Slot) => void): void {
    const ip = normalizeIp(rawIp);
    if (this.closing) {
      socket.on('error', () => {});
      this.deps.log.warn({ event: 'tunnel.refused', reason: 'shutting down' }, 'tunnel connection refused');
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
        key: ip,
        fields: { source: ip },
        what: 'tunnel connection refused',
      },
      (release) => then({ ip, release }),
    );
  }

  /**
   * Takes a connected transport (TCP, TLS or WebSocket stream) and speaks SSH on it. `acceptedAt`
   * (clock time) is when the connection arrived, when that was before this call.
   */
  accept(
    socket: net.Socket | Duplex,
    remote?: { ip: string; port: number },
    acceptedAt?: number,
    reserved?: Slot,
  ): void {
    if (this.closing && reserved) {
      // arrived before the drain began, handed over after it: refused like any new connection
      reserved.release();
      socket.destroy();
      return;
    }
    if (reserved) {
      this.start(socket, remote, acceptedAt, reserved);
      return;
    }
    // the auth timeout counts from the arrival, also while the slot is asked for (`workers`)
    const at = acceptedAt ?? this.deps.clock.now();
    this.reserve(socket, remote?.ip ?? (socket as net.Socket).remoteAddress, (slot) =>
      this.start(socket, remote, at, slot),
    );
  }

  /** Speaks SSH on a connection that holds its unauthenticated slot. */
  private start(
    socket: net.Socket | Duplex,
    remote: { ip: string; port: number } | undefined,
    acceptedAt: number | undefined,
    slot: Slot,
  ): void {
    const ip = slot.ip;
    if (socket instanceof net.Socket) {
      // a plain TCP connection: from here on read through its region reader (region-read.ts)
      const tcp = readIntoRegions(socket);
      tcp.setNoDelay(true);
      coalesceWrites(tcp);
      socket = tcp;
    }
    this.sockets.add(socket);
    const { clock, log } = this.deps;
    const source = `${ip}:${remote?.port ?? (socket as net.Socket).remotePort}`;
    const entry: PendingEntry = {
      slot,
      timer: clock.setTimeout(
        () => {
          log.info({ event: 'tunnel.auth_timeout', source }, 'connection closed: no authentication in time');
          if (entry.client) {
            entry.client.end();
            destroySocket(entry.client);
          } else socket.destroy();
        },
        Math.max(0, this.opts.authTimeout - (acceptedAt === undefined ? 0 : clock.now() - acceptedAt)),
      ),
    };
    this.pending.set(socket, entry);
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.authenticated(socket);
    });
    socket.on('error', () => {});
    if (remote && !(socket instanceof net.Socket)) {
      Object.assign(socket, { remoteAddress: remote.ip, remotePort: remote.port });
    }
    // ssh2 resumes the socket itself once its data listener is on (after its crypto init, a
    // promise): resuming it here too could start the flow before that, and what a transport had
    // already read and put back (the TLS transport's first-bytes sniff) would be emitted to no
    // listener and lost. Called from a microtask (as before `workers`) ssh2 happened to win.
    this.ssh.inject(socket);
  }

  /** How many connections are not logged in yet, in all and from one source address. */
  unauthenticated(ip?: string): number {
    return this.slots.count(ip);
  }

  /** The connection on this socket authenticated (or closed): its auth timer and slot go. */
  private authenticated(socket: unknown): void {
    const entry = this.pending.get(socket as net.Socket);
    if (!entry) return;
    this.deps.clock.clearTimeout(entry.timer);
    this.pending.delete(socket as net.Socket);
    entry.slot.release();
  }

  /**
   * The first step of a drain: no new connection on the tunnel port (its listeners close) and
   * connections that have not logged in yet are closed; logged-in sessions carry on.
   */
  async stopAccepting(): Promise<void> {
    this.closing = true;
    const closed = Promise.all(this.netServers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    // (a socket still being sniffed is refused when it is handed over: `closing` is set)
    for (const s of this.pending.keys()) s.destroy();
    // close() calls back once every accepted connection is gone: do not wait for the sessions
    void closed;
  }

  /**
   * Asks every connector with a control channel to reconnect elsewhere now; returns the ids of
   * the sessions asked (plain OpenSSH sessions cannot be asked: they end with the drain).
   */
  askToMove(reason: string): Set<string> {
    const asked = new Set<string>();
    for (const s of this.deps.registry.sessionsOf()) if (s.moveAway?.(reason)) asked.add(s.id);
    return asked;
  }

  /**
   * Stops listening and ends every session. A net.Server's close() calls back only once all its
   * connections are gone, so the sessions are ended first and their sockets destroyed; waiting
   * on the listeners before that would hang for as long as any connector stays connected.
   */
  async close(): Promise<void> {
    this.closing = true;
    const closed = Promise.all(this.netServers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    for (const s of this.deps.registry.sessionsOf()) s.end('gateway shutting down');
    for (const s of this.sockets) s.destroy();
    for (const s of this.arrived) s.destroy();
    await closed;
  }

  private onClient(client: Connection, info: { ip: string; port: number }): void {
    const { log } = this.deps;
    const ip = normalizeIp(info.ip);
    const source = `${ip}:${info.port}`;
    const sock = socketOf(client);
    const entry = sock && this.pending.get(sock);
    if (entry) entry.client = client;

    let tenant = '';
    let fingerprint = '';
    let enrolling = false;
    let enrollKeyLine = '';

    client.on('error', (err) => {
      log.debug({ err: err.message, source }, 'tunnel connection error');
      // ssh2 answers a keepalive timeout with a polite end(), which waits for a peer that is
      // gone (a frozen process or a dead link never sends its FIN): close the socket instead.
      if ((err as { level?: string }).level === 'client-timeout') {
        log.info(
          { event: 'tunnel.keepalive_timeout', source, tenant: tenant || undefined },
          'peer silent: closing',
        );
        destroySocket(client);
      }
    });

    client.on('authentication', (ctx: AuthContext) => {
      const blocked = this.deps.authThrottle.blockedFor(ip);
      if (blocked > 0) {
        log.warn(
          { event: 'auth.throttled', source, user: ctx.username },
          'login refused: too many failures from this address',
        );
        ctx.reject([]);
        return;
      }
      if (ctx.method !== 'publickey') {
        if (ctx.method !== 'none') this.deps.authThrottle.fail(ip);
        ctx.reject(['publickey']);
        return;
      }
      void this.authenticate(ctx, source, ip).then((r) => {
        if (r.ok) {
          tenant = ctx.username;
          fingerprint = r.fingerprint;
          enrolling = r.enroll;
          enrollKeyLine = r.keyLine;
          // an enrollment login proves nothing about the address: it never clears its failures
          if (r.final && !r.enroll) this.deps.authThrottle.succeed(ip);
          ctx.accept();
        } else {
          if (r.final) {
            this.deps.authThrottle.fail(ip);
            log.info(
              { event: 'auth.failed', source, tenant: ctx.username, reason: r.reason },
              'login refused',
            );
          }
          ctx.reject(['publickey']);
        }
      });
    });

    client.on('ready', () => {
      if (enrolling) {
        // not logged in as anyone: it keeps its unauthenticated slot and meets the auth timeout
        runEnrollSession(client, {
          source,
          ip,
          keyLine: enrollKeyLine,
          tenants: this.deps.tenants,
          throttle: this.deps.authThrottle,
          log,
        });
        return;
      }
      this.authenticated(sock);
      // one deps object for every session (a copy each was some 300 bytes per idle session)
      this.sessionDeps ??= {
        ...this.deps,
        refusals: this.refusals,
        mutex: this.mutex,
        version: this.opts.version,
        nodeId: this.opts.nodeId,
        bounds: this.opts.session,
      };
      runTenantSession(client, { source, address: ip, tenant, fingerprint }, this.sessionDeps);
    });

    client.on('close', () => this.authenticated(sock));
  }

  private async authenticate(
    ctx: AuthContext,
    source: string,
    ip: string,
  ): Promise<
    | { ok: true; fingerprint: string; enroll: boolean; keyLine: string; final: boolean }
    | { ok: false; reason: string; final: boolean }
  > {
    if (ctx.method !== 'publickey') return { ok: false, reason: 'method', final: true };
    const key = ctx.key;
    const fp = fingerprintOf(key.data);
    const keyLine = `${key.algo} ${key.data.toString('base64')}`;
    const final = ctx.signature !== undefined;
    const verifySig = (): boolean => {
      if (!ctx.signature) return true;
      const parsed = utils.parseKey(key.data);
      if (parsed instanceof Error || Array.isArray(parsed)) return false;
      return parsed.verify(ctx.blob!, ctx.signature, ctx.hashAlgo) === true;
    };
    if (ctx.username === ENROLL_USER) {
      if (!verifySig()) return { ok: false, reason: 'bad signature', final };
      return { ok: true, fingerprint: fp, enroll: true, keyLine, final };
    }
    if (!TENANT_ID.test(ctx.username)) return { ok: false, reason: 'invalid tenant id', final: true };
    try {
      const r = await this.deps.tenants.checkLogin(ctx.username, fp);
      if (!r.ok) return { ok: false, reason: r.reason, final: true };
    } catch (err) {
      this.deps.log.error({ err, source }, 'login check failed');
      return { ok: false, reason: 'store unavailable', final: false };
    }
    if (!verifySig()) return { ok: false, reason: 'bad signature', final: true };
    // refused at the key query already: a client told its key will not do never signs with it
    const outside = this.deps.allowlists?.tunnelRefusal(ctx.username, ip);
    if (outside !== undefined) {
      this.refusals.refuse(
        'tunnel_from',
        `${ctx.username}\0${ip}`,
        { tenant: ctx.username, source: ip },
        `login refused: ${outside}`,
      );
      return { ok: false, reason: outside, final: true };
    }
    return { ok: true, fingerprint: fp, enroll: false, keyLine, final };
  }
}

interface Slot {
  ip: string;
  release: () => void;
}

interface PendingEntry {
  slot: Slot;
  timer: unknown;
  client?: Connection;
}
