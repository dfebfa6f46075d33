/**
 * The connector's supervisor: keeps one SSH session to the gateway, asks for one forward per
 * repository, dials each incoming connection to the destination ITS OWN config names for
 * that label, reconnects with backoff after any drop, and applies config reloads without
 * dropping the connections of repositories that did not change. Per-repository state lives in
 * ./repository.ts, destination probing in ./reachability.ts, the session's options and host
 * key check in ./gateway-session.ts, what a reload changes in ./reload-plan.ts.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { type ConnectConfig, gatewayText } from '../config/connect.js';
import { destinationOf } from '../config/uri.js';
import { type Clock, systemClock } from '../core/clock.js';
import { TetherError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import { Backoff } from '../tunnel/backoff.js';
import { type TunnelClientOptions, TunnelSession } from '../tunnel/client.js';
import { dialDestination } from '../tunnel/dial.js';
import { type GatewayTransport, gatewayTransport } from '../tunnel/transports/client.js';
import { gatewaySessionOptions, logConnected, logConnectFailed, logDisconnected } from './gateway-session.js';
import { HealthChecks } from './health.js';
import { serveIncoming } from './incoming.js';
import { type LoadedKey, readPrivateKey } from './key-file.js';
import { ManagedRepos } from './managed.js';
import type { Lookup } from './managed-policy.js';
import { DrainMove, detachFrom } from './moving.js';
import { Reachability } from './reachability.js';
import { needsReconnect, type ReloadResult, reconcileRepositories } from './reload-plan.js';
import {
  leaseGranted,
  leaseRefused,
  metaOf,
  newRepo,
  type Repo,
  refusedByGateway,
  releaseRepo,
  repoStatus,
} from './repository.js';
import type { ConnectorStatus, RepoStatus } from './status.js';

export interface ConnectorDeps {
  config: ConnectConfig;
  logger: Logger;
  /** e.g. "tether-connector/0.1.0" */
  agent: string;
  clock?: Clock;
  random?: () => number;
  /** Re-reads connect.yaml (reload). */
  loadConfig?: () => ConnectConfig;
  openSession?: (opts: TunnelClientOptions) => Promise<TunnelSession>;
  dial?: (host: string, port: number, timeoutMs: number) => Promise<Socket>;
  /** How often an unreachable destination is probed, ms. */
  probeInterval?: number;
  /** Name resolution for managed repositories (checked against the policy at every dial). */
  lookup?: Lookup;
}

export type { ReloadResult } from './reload-plan.js';

/** What a stop did with the connections the connector carried. */
export interface StopResult {
  /** Whether it drained first (connections were open and `drainMs` > 0). */
  drained: boolean;
  /** Connections cut: open when the stop began (no drain) or still open at its end. */
  cut: number;
  durationMs: number;
}

interface ConnectorEvents {
  /** The connector cannot go on (host key mismatch): `run` exits non-zero. */
  fatal: [err: TetherError];
  connected: [];
  disconnected: [err: Error | undefined];
}

export class Connector extends EventEmitter<ConnectorEvents> {
  private cfg: ConnectConfig;
  private key: LoadedKey | undefined;
  private transport: GatewayTransport;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly backoff: Backoff;
  private readonly repos = new Map<string, Repo>();
  private session: TunnelSession | undefined;
  private connecting = false;
  private stopped = true;
  private state: ConnectorStatus['state'] = 'stopped';
  private since: number | null = null;
  private lastError: string | null = null;
  private fingerprint: string | null = null;
  private quota: number | null = null;
  private readonly openSession: (opts: TunnelClientOptions) => Promise<TunnelSession>;
  private readonly dial: (host: string, port: number, timeoutMs: number) => Promise<Socket>;
  private readonly probeInterval: number;
  private readonly health: HealthChecks;
  private readonly reach: Reachability;
  private readonly managed: ManagedRepos;
  /** Moving away from a draining gateway (./moving.ts): the sessions being left. */
  private readonly move: DrainMove;
  /** Set by stop(): what it will resolve with. */
  private stopping: Promise<StopResult> | undefined;
  /** Ends a draining stop's wait early (a second stop). */
  private endDrain: (() => void) | undefined;
  /** Repositories a reload removed whose connections are still finishing, and when they are cut. */
  private readonly finishing = new Map<Repo, { cut: () => void; cutAt: number }>();

  constructor(private readonly deps: ConnectorDeps) {
    super();
    this.cfg = deps.config;
    this.log = deps.logger;
    this.clock = deps.clock ?? systemClock;
    this.openSession = deps.openSession ?? ((o) => TunnelSession.open(o));
    this.dial = deps.dial ?? dialDestination;
    this.probeInterval = deps.probeInterval ?? 5000;
    this.transport = gatewayTransport(this.cfg, { log: this.log });
    this.backoff = new Backoff({
      minDelay: this.cfg.reconnect.minDelay,
      maxDelay: this.cfg.reconnect.maxDelay,
      clock: this.clock,
      random: deps.random,
    });
    this.move = new DrainMove({
      log: this.log,
      clock: this.clock,
      backoff: this.backoff,
      connect: () => void this.connect(),
    });
    for (const r of this.cfg.repositories) this.repos.set(r.label, newRepo(r));
    this.health = new HealthChecks({
      clock: this.clock,
      dial: this.dial,
      onResult: (label, ok, reason) => this.onHealth(label, ok, reason),
    });
    this.reach = new Reachability({
      clock: this.clock,
      log: this.log,
      health: this.health,
      dial: (r) => this.dialRepo(r),
      probeInterval: this.probeInterval,
      dialTimeout: () => this.cfg.dialTimeout,
      session: () => this.session,
      current: (r) => this.repos.get(r.cfg.label) === r,
      stopped: () => this.stopped,
    });
    this.managed = new ManagedRepos({
      stateDir: this.cfg.stateDir,
      log: this.log,
      policy: () => this.cfg.managed,
      localLabels: () => new Set(this.cfg.repositories.map((r) => r.label)),
      changed: () => this.syncManaged(),
      send: (m) => this.session?.send(m),
      lookup: deps.lookup,
      clock: this.clock,
    });
  }

  /** Adds forwards for managed repositories newly served, drops those no longer served. */
  private syncManaged(): void {
    const want = new Map(this.managed.serving().map((r) => [r.label, r]));
    for (const [label, r] of [...this.repos]) {
      if (r.managed && want.get(label) !== r.cfg) this.dropRepo(label, r);
    }
    for (const [label, cfg] of want) {
      if (this.repos.has(label)) continue;
      const fresh = newRepo(cfg);
      fresh.managed = true;
      this.repos.set(label, fresh);
      this.requestForward(fresh);
    }
  }

  /** Dials a repository's destination; a managed one only at an address its policy allows now. */
  private async dialRepo(r: Repo): Promise<Socket> {
    if (!r.managed) return this.dial(r.cfg.host, r.cfg.port, this.cfg.dialTimeout);
    const v = await this.managed.resolve(r.cfg);
    if (!v.ok) throw new Error(v.reason);
    return this.dial(v.address, r.cfg.port, this.cfg.dialTimeout);
  }

  /**
   * Forgets a repository: cancels its forward, so the gateway sends no new connection for it.
   * Its open connections end at once, or (`drainMs` > 0: connect.yaml no longer lists it) get
   * that long to finish, as a draining stop gives them; a stop meanwhile cuts them.
   */
  private dropRepo(label: string, r: Repo, drainMs = 0): void {
    this.repos.delete(label);
    r.gen++;
    this.reach.stopProbe(r);
    this.health.remove(label);
    releaseRepo(r, this.session, this.log);
    const open = r.live.size;
    if (open === 0) return;
    if (drainMs <= 0) {
      for (const h of r.live) h.close();
      return;
    }
    const t0 = this.clock.now();
    this.log.info(
      { event: 'connector.repository_draining', label, connections: open, drain_timeout_ms: drainMs },
      `${label} removed: forward cancelled, letting ${open} open connection(s) finish within ${drainMs} ms`,
    );
    const done = () => {
      this.clock.clearTimeout(timer);
      this.finishing.delete(r);
      r.onIdle = undefined;
      const fields = {
        event: 'connector.repository_drained',
        label,
        cut: r.live.size,
        duration_ms: this.clock.now() - t0,
      };
      if (r.live.size > 0) {
        this.log.warn(
          fields,
          `${label} removed: cutting ${r.live.size} connection(s) still open after ${drainMs} ms`,
        );
      } else this.log.info(fields, `${label} removed: every open connection finished`);
      for (const h of r.live) h.close();
    };
    const timer = this.clock.setTimeout(done, drainMs);
    r.onIdle = done;
    this.finishing.set(r, { cut: done, cutAt: t0 + drainMs });
  }

  /** A health check result: withdraw the repository when it fails, restore it when it passes. */
  private onHealth(label: string, ok: boolean, reason: string | null): void {
    const r = this.repos.get(label);
    if (!r || this.stopped) return;
    if (ok && r.state === 'unreachable') this.reach.markReachable(r);
    else if (!ok) this.reach.markUnreachable(r, `health check failed: ${destinationOf(r.cfg)}: ${reason}`);
  }

  get config(): ConnectConfig {
    return this.cfg;
  }

  /** The gateway as connect.yaml names it, with its transport (for messages). */
  private gw(): string {
    return gatewayText(this.cfg.gateway, this.cfg.transport);
  }

  /** Reads the key (errors here are the user's to fix: thrown) and starts connecting. */
  start(): void {
    if (!this.stopped) return;
    if (!this.cfg.tenant) {
      throw new TetherError(
        'CONNECTOR_NO_TENANT',
        `${this.cfg.file}: tenant is not set (run "tether connector register --token T", or add "tenant: <id>")`,
        { status: 400 },
      );
    }
    this.key = readPrivateKey(this.cfg.sshKey);
    this.managed.restore();
    this.syncManaged();
    this.stopped = false;
    this.state = 'connecting';
    this.since = this.clock.now();
    this.log.info(
      {
        event: 'connector.starting',
        gateway: this.gw(),
        route: this.transport.route.text,
        tenant: this.cfg.tenant,
        key: this.key.fingerprint,
        repositories: this.repos.size,
      },
      'connector starting',
    );
    for (const r of this.repos.values()) this.health.set(r.cfg);
    void this.connect();
  }

  /**
   * Stops: closes the session and every connection. With `drainMs` > 0 and connections open, it
   * drains first: every forward is cancelled, so the gateway sends no new connection here (another
   * connector serving a repository takes its callers), and the connections carried get up to
   * `drainMs` to finish. Called again while draining, it cuts them at once.
   */
  stop(drainMs = 0): Promise<StopResult> {
    if (this.stopping) {
      this.endDrain?.();
      return this.stopping;
    }
    this.stopped = true;
    this.backoff.cancel();
    this.health.stop();
    for (const r of this.repos.values()) this.reach.stopProbe(r);
    const open = this.move.openConnections;
    const close = (r: StopResult): StopResult => {
      this.state = 'stopped';
      for (const f of [...this.finishing.values()]) f.cut();
      const s = this.session;
      this.session = undefined;
      s?.close();
      this.move.closeAll();
      return r;
    };
    this.stopping =
      drainMs > 0 && open > 0
        ? this.drain(drainMs, open).then(close)
        : Promise.resolve(close({ drained: false, cut: open, durationMs: 0 }));
    return this.stopping;
  }

  /** The first half of a draining stop: forwards cancelled, then wait for the connections. */
  private async drain(drainMs: number, open: number): Promise<StopResult> {
    const t0 = this.clock.now();
    this.state = 'draining';
    const s = this.session;
    for (const r of this.repos.values()) {
      if (!s || r.leasedOn !== s || r.leasePort === null || !s.isOpen) continue;
      s.unforward(r.cfg.label, r.leasePort).catch((e: Error) =>
        this.log.debug({ label: r.cfg.label, err: e.message }, 'could not cancel a forward'),
      );
    }
    this.move.cancelForwards();
    this.log.info(
      { event: 'connector.draining', connections: open, drain_timeout_ms: drainMs },
      `stopping: forwards cancelled, letting ${open} open connection(s) finish within ${drainMs} ms (stop again to cut them now)`,
    );
    let timer: unknown;
    await new Promise<void>((resolve) => {
      this.endDrain = resolve;
      timer = this.clock.setTimeout(resolve, drainMs);
      void this.move.whenIdle().then(resolve);
    });
    this.clock.clearTimeout(timer);
    this.endDrain = undefined;
    const cut = this.move.openConnections;
    const durationMs = this.clock.now() - t0;
    const fields = { event: 'connector.drained', connections: open, cut, duration_ms: durationMs };
    if (cut > 0) {
      this.log.warn(
        fields,
        `cutting ${cut} connection(s) still open after ${durationMs} ms of ${drainMs} ms`,
      );
    } else {
      this.log.info(fields, `drained in ${durationMs} ms: every open connection finished`);
    }
    return { drained: true, cut, durationMs };
  }

  private async connect(): Promise<void> {
    if (this.stopped || this.connecting || this.session) return;
    this.connecting = true;
    this.state = 'connecting';
    const cfg = this.cfg;
    const key = this.key!;
    const gw = gatewayText(cfg.gateway, cfg.transport);
    const transport = this.transport;
    let session: TunnelSession;
    try {
      session = await this.openSession(
        gatewaySessionOptions({
          cfg,
          key,
          transport,
          agent: this.deps.agent,
          log: this.log,
          onFingerprint: (fingerprint) => {
            this.fingerprint = fingerprint;
          },
        }),
      );
    } catch (e) {
      this.connecting = false;
      const err =
        e instanceof TetherError ? e : new TetherError('GATEWAY_SESSION_FAILED', String(e), { status: 503 });
      this.lastError = err.message;
      if (err.code === 'GATEWAY_HOST_KEY_MISMATCH') {
        this.state = 'failed';
        this.stopped = true;
        this.log.error({ event: 'connector.host_key_mismatch', gateway: gw, code: err.code }, err.message);
        this.emit('fatal', err);
        return;
      }
      if (this.stopped || cfg !== this.cfg) {
        // stopped, or the config changed while dialing: reconnect with the new one
        if (!this.stopped) void this.connect();
        return;
      }
      // The draining gateway still carries the repositories: try again as soon as it ends.
      if (this.move.openFailed(gw, err)) return;
      this.state = 'disconnected';
      const delay = this.backoff.schedule(() => void this.connect());
      logConnectFailed(this.log, gw, err, delay, this.backoff.attempts);
      return;
    }
    this.connecting = false;
    if (this.stopped || cfg !== this.cfg) {
      session.close();
      if (!this.stopped) void this.connect();
      return;
    }
    this.session = session;
    this.state = 'connected';
    this.since = this.clock.now();
    this.lastError = null;
    this.fingerprint = session.hostFingerprint;
    this.quota = session.welcome?.quota ?? null;
    this.backoff.connected();
    logConnected(this.log, gw, transport, session, cfg.tenant);
    session.on('connection', (c) => {
      // counted from its arrival: a session being left, or a draining stop, waits for a
      // connection whose destination is still being dialled
      this.move.connectionOpened(session);
      serveIncoming(c, this.repos.get(c.label), {
        log: this.log,
        dial: (r) => this.dialRepo(r),
        opened: (r) => {
          if (r.state === 'unreachable') this.reach.markReachable(r);
        },
        closed: () => this.move.connectionClosed(session),
        unreachable: (r, reason) => this.reach.markUnreachable(r, reason),
      });
    });
    this.managed.sessionStarted();
    session.on('message', (m) => {
      if (this.managed.onMessage(m as unknown as Record<string, unknown>)) return;
      if (m.type === 'reconnect') {
        // The gateway drains: a new session at once; this one serves until the forwards moved.
        if (this.session !== session || this.stopped) return;
        this.session = undefined;
        this.move.start(session, this.repos.values(), this.gw(), m.reason);
      } else if (m.type === 'refused') {
        const r = this.repos.get(m.label);
        if (r) refusedByGateway(r, m.reason);
      } else if (m.type === 'welcome') {
        this.quota = m.quota;
      } else if (m.type === 'error') {
        this.log.warn({ event: 'connector.gateway_error', code: m.code }, `gateway: ${m.message}`);
      }
    });
    session.on('close', (err) => this.onSessionClosed(session, err));
    this.emit('connected');
    for (const r of this.repos.values()) this.requestForward(r);
    // Listening now: the gateway may send its proposals (none can arrive before a listener).
    session.send({ type: 'managed-ready' });
  }

  private onSessionClosed(session: TunnelSession, err: Error | undefined): void {
    // a draining gateway ended the session we were leaving: reconnects now if the move failed
    if (this.move.closed(session)) return;
    if (this.session !== session) return;
    this.session = undefined;
    detachFrom(this.repos.values(), session); // forwarded again on the next session
    this.emit('disconnected', err);
    if (this.stopped) return;
    this.state = 'disconnected';
    this.since = this.clock.now();
    this.lastError = err?.message ?? 'the gateway closed the session';
    logDisconnected(
      this.log,
      this.gw(),
      this.lastError,
      this.backoff.schedule(() => void this.connect()),
    );
  }

  private requestForward(r: Repo): void {
    const s = this.session;
    if (!s) return;
    const gen = ++r.gen;
    s.send(metaOf(r.cfg));
    if (r.state !== 'unreachable') {
      r.state = 'pending';
      r.reason = null;
    }
    s.forward(r.cfg.label).then(
      (port) => {
        if (this.stopped) {
          // granted while the connector drains: no new connection may come here
          if (s.isOpen) s.unforward(r.cfg.label, port).catch(() => {});
          return;
        }
        if (this.repos.get(r.cfg.label) !== r || r.gen !== gen || this.session !== s) {
          // removed or superseded while we waited
          if (this.repos.get(r.cfg.label) !== r && s.isOpen) s.unforward(r.cfg.label, port).catch(() => {});
          return;
        }
        leaseGranted(r, s, port, this.log);
        this.move.forwardMoved(r.cfg.label);
      },
      (e: Error) => {
        if (this.repos.get(r.cfg.label) !== r || r.gen !== gen || this.session !== s) return;
        leaseRefused(r, e, this.log);
      },
    );
  }

  /** Re-reads connect.yaml and applies it. A broken file changes nothing and throws. */
  reload(): ReloadResult {
    if (!this.deps.loadConfig)
      throw new TetherError('RELOAD_UNSUPPORTED', 'this connector cannot re-read its config');
    return this.apply(this.deps.loadConfig());
  }

  /**
   * Applies a new configuration. Added repositories are forwarded, removed ones cancelled,
   * changed ones get their new destination for new connections; open connections of
   * repositories that stay are left alone. A new gateway, tenant or key means a new session.
   */
  apply(next: ConnectConfig): ReloadResult {
    const prev = this.cfg;
    const reconnect = needsReconnect(prev, next);
    let newKey: LoadedKey | undefined;
    let newTransport: GatewayTransport | undefined;
    if (reconnect) {
      if (!next.tenant) {
        throw new TetherError('CONNECTOR_NO_TENANT', `${next.file}: tenant is not set`, { status: 400 });
      }
      newKey = readPrivateKey(next.sshKey);
      newTransport = gatewayTransport(next, { log: this.log });
    } else if (!this.stopped) {
      // the key file may have been replaced in place
      newKey = readPrivateKey(next.sshKey);
    }

    this.cfg = next;
    if (newKey) this.key = newKey;
    if (newTransport) this.transport = newTransport;
    const result = reconcileRepositories(next, reconnect, {
      repos: this.repos,
      session: this.session,
      // a new session cuts every connection anyway
      drop: (label, r) => this.dropRepo(label, r, reconnect || this.stopped ? 0 : next.drainTimeout),
      request: (r) => this.requestForward(r),
      stopProbe: (r) => this.reach.stopProbe(r),
    });
    this.log.info(
      {
        event: 'connector.reloaded',
        added: result.added,
        removed: result.removed,
        changed: result.changed,
        reconnect,
      },
      'configuration reloaded',
    );
    this.managed.recheck('connect.yaml reloaded');
    this.syncManaged();
    if (!this.stopped) for (const r of this.repos.values()) this.health.set(r.cfg);
    if (reconnect && !this.stopped) {
      const s = this.session;
      this.session = undefined;
      this.backoff.reset();
      this.backoff.cancel();
      if (s) {
        for (const r of this.repos.values()) {
          if (r.state !== 'rejected') r.state = 'pending';
          r.leasedOn = undefined;
          r.gen++;
        }
        s.close();
      }
      void this.connect();
    }
    return result;
  }

  /** Round trip to the gateway over the live session, ms. */
  async ping(): Promise<number> {
    if (!this.session) {
      throw new TetherError(
        'GATEWAY_UNREACHABLE',
        `not connected to the gateway ${this.gw()}${this.lastError ? `: ${this.lastError}` : ''}`,
        { status: 503 },
      );
    }
    return this.session.ping();
  }

  status(): ConnectorStatus {
    const repositories: RepoStatus[] = [...this.repos.values()].map(repoStatus);
    const next = this.backoff.nextAt;
    return {
      pid: process.pid,
      config: this.cfg.file,
      state: this.state,
      connected: this.session !== undefined,
      gateway: this.gw(),
      transport: this.transport.route.transport,
      route: this.transport.route.text,
      tenant: this.cfg.tenant ?? null,
      fingerprint: this.fingerprint,
      since: this.since === null ? null : new Date(this.since).toISOString(),
      quota: this.session?.welcome?.quota ?? this.quota,
      lastError: this.lastError,
      nextRetryAt: next === undefined || this.session ? null : new Date(next).toISOString(),
      attempts: this.backoff.attempts,
      repositories,
      managed: this.managed.status(),
      finishing: [...this.finishing].map(([r, f]) => ({
        label: r.cfg.label,
        connections: r.live.size,
        cutAt: new Date(f.cutAt).toISOString(),
      })),
    };
  }
}
