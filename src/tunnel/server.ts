import { randomUUID } from 'node:crypto';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import ssh2, { type AuthContext, type Connection, type ServerChannel, type Session } from 'ssh2';
import type { ForwardAuthorizer } from '../core/authorization.js';
import type { Clock } from '../core/clock.js';
import type { ForwardEndpoint, ForwardRegistry, LiveSession } from '../core/forward-registry.js';
import { TENANT_ID } from '../core/ids.js';
import { KeyedMutex } from '../core/keyed-mutex.js';
import { fingerprintOf } from '../core/ssh-keys.js';
import type { TenantService } from '../core/tenants.js';
import type { FailureThrottle } from '../core/throttle.js';
import { isTetherError } from '../errors/index.js';
import type { LeaseListeners } from '../frontdoor/raw-port/index.js';
import type { Logger } from '../log/index.js';
import type { RepoMeta, Store } from '../store/types.js';
import {
  CONTROL_SUBSYSTEM,
  ENROLL_USER,
  encode,
  type GatewayMessage,
  JsonLineDecoder,
} from './control-protocol.js';
import { coalesceWrites } from './pipe.js';
import { sendSshDebug } from './ssh-debug.js';
import { routePlainPort } from './transports/sniff.js';
import { channelWindowOptions, DEFAULT_MAX_WINDOW } from './windows.js';

const { Server, utils } = ssh2;

export interface TunnelServerOptions {
  hostKey: string;
  keepaliveInterval: number;
  keepaliveCountMax: number;
  authTimeout: number;
  maxUnauthenticated: number;
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
  listeners: LeaseListeners;
  authThrottle: FailureThrottle;
  clock: Clock;
  log: Logger;
  /** Called when a forward's metadata arrives or changes (persist it). */
  onRepoMeta?: (tenant: string, label: string, meta: RepoMeta) => void;
}

const REFUSE_SESSION =
  'tether: this gateway only carries port forwards; shells, commands and file transfer are refused\r\n';

/** The gateway's SSH endpoint for connectors: auth, forwards, control channel. */
export class TunnelServer {
  private readonly ssh: InstanceType<typeof Server>;
  private readonly netServers: net.Server[] = [];
  private readonly sockets = new Set<net.Socket | Duplex>();
  private readonly mutex = new KeyedMutex();
  /**
   * Connections not authenticated yet, from the moment they are accepted: one that never even
   * sends its SSH identification counts against the cap and meets the auth timeout too.
   */
  private readonly pending = new Map<net.Socket | Duplex, { timer: unknown; client?: Connection }>();
  private closing = false;
  /** Takes TLS that arrives on the plain SSH port; set by the TLS transport (src/tunnel/transports). */
  tlsOnSshPort: ((socket: net.Socket) => void) | undefined;

  constructor(
    private readonly opts: TunnelServerOptions,
    private readonly deps: TunnelServerDeps,
  ) {
    this.ssh = new Server(
      {
        hostKeys: [opts.hostKey],
        ident: `Tether_${opts.version}`,
        keepaliveInterval: opts.keepaliveInterval,
        keepaliveCountMax: opts.keepaliveCountMax,
        highWaterMark: 256 * 1024,
        ...channelWindowOptions({ maxWindow: opts.maxWindow ?? DEFAULT_MAX_WINDOW }),
      } as ConstructorParameters<typeof Server>[0],
      () => {},
    );
    this.ssh.on('connection', (client: Connection, info: { ip: string; port: number }) =>
      this.onClient(client, info),
    );
  }

  /** Listens for plain SSH on host:port (0 = any free port). */
  async listen(host: string, port: number): Promise<net.AddressInfo> {
    const srv = net.createServer({ noDelay: true, pauseOnConnect: true }, (s) => {
      // the auth timeout counts from here: the first-bytes sniff is part of the time to log in
      const at = this.deps.clock.now();
      void routePlainPort(s, {
        ssh: (x) => this.accept(x, undefined, at),
        tls: this.tlsOnSshPort,
        log: this.deps.log,
      });
    });
    this.netServers.push(srv);
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen({ host, port }, () => {
        srv.off('error', reject);
        resolve();
      });
    });
    return srv.address() as net.AddressInfo;
  }

  /**
   * Takes a connected transport (TCP, TLS or WebSocket stream) and speaks SSH on it. `acceptedAt`
   * (clock time) is when the connection arrived, when that was before this call.
   */
  accept(socket: net.Socket | Duplex, remote?: { ip: string; port: number }, acceptedAt?: number): void {
    if (this.closing || this.pending.size >= this.opts.maxUnauthenticated) {
      this.deps.log.warn(
        {
          event: 'tunnel.refused',
          reason: this.closing ? 'shutting down' : 'too many unauthenticated connections',
        },
        'tunnel connection refused',
      );
      socket.destroy();
      return;
    }
    if (socket instanceof net.Socket) {
      socket.setNoDelay(true);
      coalesceWrites(socket);
    }
    this.sockets.add(socket);
    const { clock, log } = this.deps;
    const ip = remote?.ip ?? (socket as net.Socket).remoteAddress;
    const source = `${ip}:${remote?.port ?? (socket as net.Socket).remotePort}`;
    const entry: { timer: unknown; client?: Connection } = {
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
    const ssh = this.ssh as unknown as { injectSocket(s: Duplex): void };
    if (remote && !(socket instanceof net.Socket)) {
      Object.assign(socket, { remoteAddress: remote.ip, remotePort: remote.port });
    }
    ssh.injectSocket(socket);
    if (socket instanceof net.Socket) socket.resume();
  }

  /** The connection on this socket authenticated (or closed): its auth timer and slot go. */
  private authenticated(socket: unknown): void {
    const entry = this.pending.get(socket as net.Socket);
    if (!entry) return;
    this.deps.clock.clearTimeout(entry.timer);
    this.pending.delete(socket as net.Socket);
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.netServers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    for (const s of this.deps.registry.sessionsOf()) s.end('gateway shutting down');
    for (const s of this.sockets) s.destroy();
  }

  private onClient(client: Connection, info: { ip: string; port: number }): void {
    const { log } = this.deps;
    const source = `${info.ip}:${info.port}`;
    const ip = info.ip;
    const sock = (client as unknown as { _sock?: unknown })._sock;
    const entry = this.pending.get(sock as net.Socket);
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
      void this.authenticate(ctx, source).then((r) => {
        if (r.ok) {
          tenant = ctx.username;
          fingerprint = r.fingerprint;
          enrolling = r.enroll;
          enrollKeyLine = r.keyLine;
          if (r.final) this.deps.authThrottle.succeed(ip);
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
      this.authenticated(sock);
      if (enrolling) {
        this.onEnrollSession(client, source, enrollKeyLine);
        return;
      }
      this.onTenantSession(client, source, tenant, fingerprint);
    });

    client.on('close', () => this.authenticated(sock));
  }

  private async authenticate(
    ctx: AuthContext,
    source: string,
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
    return { ok: true, fingerprint: fp, enroll: false, keyLine, final };
  }

  private onEnrollSession(client: Connection, source: string, keyLine: string): void {
    const { log, tenants } = this.deps;
    client.on('request', (_accept, reject) => reject?.());
    client.on('session', (acceptSession) => {
      const session = acceptSession();
      session.on('subsystem', (accept, reject, info: { name: string }) => {
        if (info.name !== CONTROL_SUBSYSTEM) return reject();
        const ch = accept();
        const send = (m: GatewayMessage) => ch.write(encode(m));
        let done = false;
        const decoder = new JsonLineDecoder(
          (msg) => {
            if (done) return;
            if (msg.type !== 'enroll' || typeof msg.token !== 'string') {
              send({ type: 'error', code: 'ENROLLMENT_ONLY', message: 'this session may only enroll a key' });
              return;
            }
            done = true;
            tenants.enroll(msg.token, keyLine).then(
              (r) => {
                log.info(
                  { event: 'tenant.enrolled', tenant: r.tenant, fingerprint: r.fingerprint, source },
                  'key enrolled',
                );
                send({ type: 'enrolled', tenant: r.tenant, fingerprint: r.fingerprint });
                ch.end();
              },
              (err: unknown) => {
                log.info(
                  { event: 'enroll.failed', source, reason: String((err as Error).message) },
                  'enrollment refused',
                );
                send({
                  type: 'error',
                  code: isTetherError(err) ? err.code : 'INTERNAL',
                  message: isTetherError(err) ? err.message : 'enrollment failed',
                });
                ch.end();
              },
            );
          },
          (why) => send({ type: 'error', code: 'BAD_CONTROL_MESSAGE', message: why }),
        );
        ch.on('data', (c: Buffer) => decoder.push(c));
      });
      refuseSessionUse(session);
    });
  }

  private onTenantSession(client: Connection, source: string, tenant: string, fingerprint: string): void {
    const { log, registry, listeners, authorizer } = this.deps;
    const id = randomUUID();
    const slog = log.child({ tenant, session: id.slice(0, 8) });
    const forwards = new Map<string, { port: number; endpoint: ForwardEndpoint }>();
    const metas = new Map<string, RepoMeta>();
    let control: ServerChannel | undefined;
    let ended = false;
    let agent = 'ssh';
    let unregistering = false;

    const live: LiveSession = {
      id,
      tenant,
      source,
      since: this.deps.clock.now(),
      fingerprint,
      get agent() {
        return agent;
      },
      traffic: () => {
        const sock = (client as unknown as { _sock?: { bytesRead?: number; bytesWritten?: number } })._sock;
        return { received: sock?.bytesRead ?? 0, sent: sock?.bytesWritten ?? 0 };
      },
      end: (reason: string) => {
        if (ended) return;
        slog.info({ event: 'session.ended_by_gateway', reason }, 'ending session');
        // An unregistering connector hears "unregistered" before the session ends.
        if (unregistering) sendControl({ type: 'unregistered', fingerprint });
        else sendControl({ type: 'error', code: 'SESSION_ENDED', message: reason });
        client.end();
        destroySocket(client);
      },
    };
    const sendControl = (m: GatewayMessage) => {
      if (control && !control.destroyed) control.write(encode(m));
    };
    registry.addSession(live);
    slog.info({ event: 'session.opened', source, fingerprint }, 'session opened');

    const makeEndpoint = (label: string, port: number): ForwardEndpoint => ({
      session: live,
      connections: 0,
      open: (origin) =>
        new Promise<Duplex>((resolve, reject) => {
          client.forwardOut(label, port, origin.address, origin.port, (err, ch) => {
            if (err) return reject(err);
            // ssh2 closes server-side channels as soon as their write side ends; a caller that
            // half-closes (sends FIN, then waits for the answer) needs EOF only.
            (ch as unknown as { server: boolean }).server = false;
            resolve(ch as unknown as Duplex);
          });
        }),
    });

    const refuse = (label: string, code: string, reason: string, reject?: () => void) => {
      slog.info({ event: 'forward.refused', label, code, reason }, `forward refused: ${reason}`);
      sendSshDebug(client, `tether: forward ${label} refused: ${reason}`);
      sendControl({ type: 'refused', label, code, reason });
      reject?.();
    };

    client.on('request', (accept, reject, name, info) => {
      if (name === 'tcpip-forward') {
        const { bindAddr: label, bindPort } = info as { bindAddr: string; bindPort: number };
        void this.mutex
          .run(tenant, async () => {
            if (ended) return;
            const existing = forwards.get(label);
            if (existing && (bindPort === 0 || bindPort === existing.port)) {
              accept?.(existing.port);
              return;
            }
            const d = await authorizer.authorizeForward(tenant, label, bindPort);
            if (!d.ok) return refuse(label, d.code, d.reason, reject);
            try {
              await listeners.open(d.port);
            } catch (e) {
              return refuse(label, 'PORT_UNAVAILABLE', (e as Error).message, reject);
            }
            if (ended) return;
            const endpoint = makeEndpoint(label, d.port);
            forwards.set(label, { port: d.port, endpoint });
            const meta = metas.get(label) ?? null;
            registry.add(tenant, label, d.port, endpoint, meta);
            if (meta) this.deps.onRepoMeta?.(tenant, label, meta);
            slog.info({ event: 'forward.granted', label, port: d.port }, `forward ${label} → port ${d.port}`);
            accept?.(d.port);
            sendControl({ type: 'forward', label, port: d.port });
          })
          .catch((err: unknown) => {
            slog.error({ err, label }, 'forward request failed');
            refuse(label, 'INTERNAL', 'the gateway could not process the forward', reject);
          });
        return;
      }
      if (name === 'cancel-tcpip-forward') {
        const { bindAddr: label } = info as { bindAddr: string; bindPort: number };
        const f = forwards.get(label);
        if (!f) return reject?.();
        forwards.delete(label);
        if (registry.remove(tenant, label, f.endpoint)) listeners.close(f.port);
        slog.info({ event: 'forward.cancelled', label, port: f.port }, `forward ${label} cancelled`);
        accept?.();
        return;
      }
      const req = String(name);
      slog.info({ event: 'request.refused', request: req }, `global request ${req} refused`);
      reject?.();
    });

    client.on('session', (acceptSession) => {
      const session = acceptSession();
      session.on('subsystem', (accept, _reject, info: { name: string }) => {
        if (info.name !== CONTROL_SUBSYSTEM || control) {
          const ch = accept();
          ch.stderr.write(REFUSE_SESSION);
          ch.exit(1);
          ch.end();
          return;
        }
        control = accept();
        const ch = control;
        void this.deps.store.getTenant(tenant).then(
          (t) =>
            sendControl({
              type: 'welcome',
              tenant,
              quota: t?.quota ?? 0,
              gateway: this.opts.version,
              node: this.opts.nodeId,
            }),
          () => {},
        );
        const decoder = new JsonLineDecoder(
          (msg) =>
            this.onControlMessage(msg, {
              tenant,
              fingerprint,
              slog,
              metas,
              forwards,
              sendControl,
              setAgent: (a) => (agent = a),
              setUnregistering: (on: boolean) => {
                unregistering = on;
              },
              end: live.end,
            }),
          (why) => sendControl({ type: 'error', code: 'BAD_CONTROL_MESSAGE', message: why }),
        );
        ch.on('data', (c: Buffer) => decoder.push(c));
        ch.on('close', () => {
          if (control === ch) control = undefined;
        });
      });
      refuseSessionUse(session);
    });

    client.on('close', () => {
      ended = true;
      for (const [label, f] of forwards) {
        if (registry.remove(tenant, label, f.endpoint)) listeners.close(f.port);
      }
      forwards.clear();
      registry.removeSession(live);
      slog.info(
        { event: 'session.closed', source, fingerprint, duration_ms: this.deps.clock.now() - live.since },
        'session closed',
      );
    });
  }

  private onControlMessage(
    msg: Record<string, unknown>,
    s: {
      tenant: string;
      fingerprint: string;
      slog: Logger;
      metas: Map<string, RepoMeta>;
      forwards: Map<string, { port: number; endpoint: ForwardEndpoint }>;
      sendControl: (m: GatewayMessage) => void;
      setAgent: (a: string) => void;
      setUnregistering: (on: boolean) => void;
      end: (reason: string) => void;
    },
  ): void {
    switch (msg.type) {
      case 'hello':
        s.setAgent(typeof msg.agent === 'string' ? msg.agent.slice(0, 100) : 'connector');
        return;
      case 'repo': {
        const label = typeof msg.label === 'string' ? msg.label : '';
        if (!label) {
          s.sendControl({ type: 'error', code: 'BAD_CONTROL_MESSAGE', message: 'repo without label' });
          return;
        }
        const str = (v: unknown, max = 500) => (typeof v === 'string' ? v.slice(0, max) : null);
        const meta: RepoMeta = {
          service: str(msg.service, 40),
          scheme: str(msg.scheme, 20),
          host: str(msg.host, 255),
          dest_port: typeof msg.port === 'number' && Number.isInteger(msg.port) ? msg.port : null,
          path: str(msg.path),
        };
        s.metas.set(label, meta);
        const f = s.forwards.get(label);
        if (f) {
          f.endpoint.meta = meta;
          const live = this.deps.registry.get(s.tenant, label);
          if (live) live.meta = meta;
          this.deps.onRepoMeta?.(s.tenant, label, meta);
        }
        return;
      }
      case 'withdraw':
      case 'restore': {
        const label = typeof msg.label === 'string' ? msg.label : '';
        const f = s.forwards.get(label);
        if (!f) return;
        f.endpoint.withdrawn =
          msg.type === 'withdraw' ? String(msg.reason ?? 'destination unreachable').slice(0, 200) : undefined;
        s.slog.info(
          { event: `forward.${msg.type}`, label, reason: f.endpoint.withdrawn },
          `forward ${label} ${msg.type === 'withdraw' ? 'withdrawn' : 'restored'}`,
        );
        return;
      }
      case 'ping':
        s.sendControl({ type: 'pong', id: typeof msg.id === 'number' ? msg.id : 0 });
        return;
      case 'unregister':
        s.setUnregistering(true);
        // Removing the key ends every session that used it, this one included (after "unregistered").
        this.deps.tenants.removeKey(s.tenant, s.fingerprint).then(
          () => s.end('key unregistered'),
          (err: unknown) => {
            s.setUnregistering(false);
            s.sendControl({
              type: 'error',
              code: isTetherError(err) ? err.code : 'INTERNAL',
              message: isTetherError(err) ? err.message : 'unregister failed',
            });
          },
        );
        return;
      default:
        s.sendControl({
          type: 'error',
          code: 'UNKNOWN_CONTROL_MESSAGE',
          message: `unknown control message type ${JSON.stringify(String(msg.type).slice(0, 40))}`,
        });
    }
  }
}

/** Shells, commands, ptys and other subsystems get a clear refusal, never access. */
function refuseSessionUse(session: Session): void {
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

function destroySocket(client: Connection): void {
  const sock = (client as unknown as { _sock?: { destroy(): void } })._sock;
  setTimeout(() => sock?.destroy(), 100).unref();
}
