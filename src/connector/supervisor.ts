/**
 * The connector's supervisor: keeps one SSH session to the gateway, asks for one forward per
 * repository, dials each incoming connection to the destination ITS OWN config names for
 * that label, reconnects with backoff after any drop, and applies config reloads without
 * dropping the connections of repositories that did not change.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { type ConnectConfig, gatewayText, type RepositoryConfig } from '../config/connect.js';
import { destinationOf } from '../config/uri.js';
import { type Clock, systemClock } from '../core/clock.js';
import { TetherError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import { Backoff } from '../tunnel/backoff.js';
import { type IncomingConnection, type TunnelClientOptions, TunnelSession } from '../tunnel/client.js';
import type { RepoMetaMessage } from '../tunnel/control-protocol.js';
import { buildProxyHeader } from '../tunnel/proxy-header-out.js';
import { type GatewayTransport, gatewayTransport } from '../tunnel/transports/client.js';
import { HealthChecks } from './health.js';
import { type LoadedKey, readPrivateKey } from './key-file.js';
import { checkHostKey } from './known-hosts.js';
import { dialDestination, relayChannel } from './relay.js';
import type { ConnectorStatus, RepoState, RepoStatus } from './status.js';

/** The transport (TCP to the proxy, TLS, WebSocket upgrade) must be up within this time. */
const TRANSPORT_TIMEOUT_MS = 15_000;

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
}

interface Repo {
  cfg: RepositoryConfig;
  state: RepoState;
  reason: string | null;
  leasePort: number | null;
  /** The session the current lease belongs to. */
  leasedOn: TunnelSession | undefined;
  /** Bumped whenever a forward request is superseded. */
  gen: number;
  connections: number;
  totalConnections: number;
  bytesIn: number;
  bytesOut: number;
  /** Connections from the gateway the destination did not accept. */
  dialFailures: number;
  /** We told the gateway this destination is down. */
  withdrawn: boolean;
  probe: unknown;
  live: Set<{ close(): void }>;
}

export interface ReloadResult {
  added: string[];
  removed: string[];
  changed: string[];
  reconnect: boolean;
  /** Changes that wait for a restart (e.g. metrics_listen), as messages for the user. */
  warnings?: string[];
}

interface ConnectorEvents {
  /** The connector cannot go on (host key mismatch): `run` exits non-zero. */
  fatal: [err: TetherError];
  connected: [];
  disconnected: [err: Error | undefined];
}

/** Ends a probe connection with a FIN, not a reset, so the service does not log an error. */
function closeGently(sock: Socket): void {
  sock.on('error', () => {});
  sock.resume();
  sock.end();
  setTimeout(() => sock.destroy(), 2000).unref();
}

function metaOf(r: RepositoryConfig): RepoMetaMessage {
  return {
    type: 'repo',
    label: r.label,
    service: r.service,
    scheme: r.scheme,
    host: r.host,
    port: r.port,
    path: r.path,
  };
}

function sameTarget(a: RepositoryConfig, b: RepositoryConfig): boolean {
  return (
    a.service === b.service &&
    a.scheme === b.scheme &&
    a.host === b.host &&
    a.port === b.port &&
    a.path === b.path
  );
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
    for (const r of this.cfg.repositories) this.repos.set(r.label, this.newRepo(r));
    this.health = new HealthChecks({
      clock: this.clock,
      dial: this.dial,
      onResult: (label, ok, reason) => this.onHealth(label, ok, reason),
    });
  }

  /** A health check result: withdraw the repository when it fails, restore it when it passes. */
  private onHealth(label: string, ok: boolean, reason: string | null): void {
    const r = this.repos.get(label);
    if (!r || this.stopped) return;
    if (ok && r.state === 'unreachable') this.markReachable(r);
    else if (!ok) this.markUnreachable(r, `health check failed: ${destinationOf(r.cfg)}: ${reason}`);
  }

  get config(): ConnectConfig {
    return this.cfg;
  }

  private newRepo(cfg: RepositoryConfig): Repo {
    return {
      cfg,
      state: 'pending',
      reason: null,
      leasePort: null,
      leasedOn: undefined,
      gen: 0,
      connections: 0,
      totalConnections: 0,
      bytesIn: 0,
      bytesOut: 0,
      dialFailures: 0,
      withdrawn: false,
      probe: undefined,
      live: new Set(),
    };
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
    this.stopped = false;
    this.state = 'connecting';
    this.since = this.clock.now();
    this.log.info(
      {
        event: 'connector.starting',
        gateway: gatewayText(this.cfg.gateway, this.cfg.transport),
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

  /** Closes the session and every connection. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.state = 'stopped';
    this.backoff.cancel();
    this.health.stop();
    for (const r of this.repos.values()) this.stopProbe(r);
    const s = this.session;
    this.session = undefined;
    s?.close();
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
      session = await this.openSession({
        host: cfg.gateway.host,
        port: cfg.gateway.port,
        gatewayLabel: gw,
        dial: transport.dial ? () => transport.dial!(TRANSPORT_TIMEOUT_MS) : undefined,
        username: cfg.tenant!,
        privateKey: key.privateKey,
        keyFingerprint: key.fingerprint,
        agent: this.deps.agent,
        keepaliveInterval: cfg.keepaliveInterval,
        keepaliveCountMax: cfg.keepaliveCountMax,
        maxWindow: cfg.maxWindow,
        logger: this.log,
        verifyHostKey: (blob) => {
          const v = checkHostKey(
            {
              host: cfg.gateway.host,
              port: cfg.gateway.port,
              pinned: cfg.gatewayFingerprint,
              pinnedSource: cfg.file,
              knownHostsFile: join(cfg.stateDir, 'known_hosts'),
            },
            blob,
          );
          this.fingerprint = v.fingerprint;
          if (v.ok && v.learned) {
            this.log.warn(
              {
                event: 'connector.host_key_learned',
                gateway: gw,
                fingerprint: v.fingerprint,
                knownHosts: join(cfg.stateDir, 'known_hosts'),
              },
              `trusting the gateway's host key on first use: ${v.fingerprint} (pin it with gateway_fingerprint)`,
            );
          }
          return v.ok
            ? { ok: true, fingerprint: v.fingerprint }
            : { ok: false, fingerprint: v.fingerprint, error: v.error };
        },
      });
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
      this.state = 'disconnected';
      const delay = this.backoff.schedule(() => void this.connect());
      this.log.warn(
        {
          event: 'connector.connect_failed',
          gateway: gw,
          code: err.code,
          retryInMs: delay,
          attempt: this.backoff.attempts,
        },
        err.message,
      );
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
    this.log.info(
      {
        event: 'connector.connected',
        gateway: gw,
        route: transport.route.text,
        fingerprint: session.hostFingerprint,
        tenant: session.welcome?.tenant ?? cfg.tenant,
        quota: this.quota,
        gatewayVersion: session.welcome?.gateway,
      },
      `connected to the gateway ${gw} (${session.hostFingerprint}); route: ${transport.route.text}`,
    );
    session.on('connection', (c) => this.onConnection(c));
    session.on('message', (m) => {
      if (m.type === 'refused') {
        const r = this.repos.get(m.label);
        if (r && r.state !== 'active') {
          r.state = 'rejected';
          r.reason = m.reason;
        }
      } else if (m.type === 'welcome') {
        this.quota = m.quota;
      } else if (m.type === 'error') {
        this.log.warn({ event: 'connector.gateway_error', code: m.code }, `gateway: ${m.message}`);
      }
    });
    session.on('close', (err) => this.onSessionClosed(session, err));
    this.emit('connected');
    for (const r of this.repos.values()) this.requestForward(r);
  }

  private onSessionClosed(session: TunnelSession, err: Error | undefined): void {
    if (this.session !== session) return;
    this.session = undefined;
    for (const r of this.repos.values()) {
      if (r.state !== 'rejected' && r.state !== 'unreachable') r.state = 'pending';
      r.leasedOn = undefined;
      r.gen++;
    }
    this.emit('disconnected', err);
    if (this.stopped) return;
    this.state = 'disconnected';
    this.since = this.clock.now();
    this.lastError = err?.message ?? 'the gateway closed the session';
    const delay = this.backoff.schedule(() => void this.connect());
    this.log.warn(
      {
        event: 'connector.disconnected',
        gateway: gatewayText(this.cfg.gateway, this.cfg.transport),
        retryInMs: delay,
      },
      `lost the gateway: ${this.lastError}`,
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
        if (this.repos.get(r.cfg.label) !== r || r.gen !== gen || this.session !== s) {
          // removed or superseded while we waited
          if (this.repos.get(r.cfg.label) !== r && s.isOpen) s.unforward(r.cfg.label, port).catch(() => {});
          return;
        }
        r.leasePort = port;
        r.leasedOn = s;
        if (r.withdrawn) {
          s.send({ type: 'withdraw', label: r.cfg.label, reason: r.reason ?? 'destination unreachable' });
        } else {
          r.state = 'active';
          r.reason = null;
        }
        this.log.info(
          {
            event: 'connector.forward_active',
            label: r.cfg.label,
            leasePort: port,
            destination: destinationOf(r.cfg),
            service: r.cfg.service,
          },
          `forward ${r.cfg.label} active on gateway port ${port} → ${destinationOf(r.cfg)}`,
        );
      },
      (e: Error) => {
        if (this.repos.get(r.cfg.label) !== r || r.gen !== gen || this.session !== s) return;
        r.state = 'rejected';
        r.reason = e.message;
        r.leasePort = null;
        this.log.warn(
          { event: 'connector.forward_refused', label: r.cfg.label, code: (e as TetherError).code },
          `forward ${r.cfg.label} refused: ${e.message}`,
        );
      },
    );
  }

  private onConnection(c: IncomingConnection): void {
    const r = this.repos.get(c.label);
    if (!r) {
      // Only labels from our own config are ever dialed.
      this.log.warn(
        { event: 'connector.unknown_label', label: c.label, port: c.port },
        'refused a connection for a label this connector does not serve',
      );
      c.reject();
      return;
    }
    const target = r.cfg;
    const dest = destinationOf(target);
    this.dial(target.host, target.port, this.cfg.dialTimeout).then(
      (sock) => {
        let channel: ReturnType<IncomingConnection['accept']>;
        try {
          channel = c.accept();
        } catch {
          sock.destroy();
          return;
        }
        if (r.state === 'unreachable') this.markReachable(r);
        r.connections++;
        r.totalConnections++;
        const handle = {
          close: () => {
            sock.destroy();
            channel.destroy();
          },
        };
        r.live.add(handle);
        // the destination reads the cloud caller's address first (proxy_protocol: v1|v2)
        if (target.proxyProtocol) {
          sock.write(
            buildProxyHeader(
              target.proxyProtocol,
              { address: c.info.srcIP, port: c.info.srcPort },
              { address: sock.remoteAddress ?? '', port: sock.remotePort ?? target.port },
            ),
          );
        }
        this.log.debug(
          {
            event: 'connector.connection',
            label: c.label,
            destination: dest,
            from: `${c.info.srcIP}:${c.info.srcPort}`,
          },
          'connection',
        );
        relayChannel(channel, sock, {
          onBytes: (toDest, fromDest) => {
            r.bytesIn += toDest;
            r.bytesOut += fromDest;
          },
          done: (t) => {
            r.connections--;
            r.live.delete(handle);
            this.log.debug(
              {
                event: 'connector.connection_closed',
                label: c.label,
                bytesIn: t.toDestination,
                bytesOut: t.fromDestination,
                error: t.error?.message,
              },
              'connection closed',
            );
          },
        });
      },
      (e: Error) => {
        c.reject();
        r.dialFailures++;
        this.markUnreachable(r, `destination unreachable: ${dest}: ${e.message}`);
      },
    );
  }

  private markUnreachable(r: Repo, reason: string): void {
    const first = r.state !== 'unreachable';
    r.state = 'unreachable';
    r.reason = reason;
    if (first)
      this.log.warn(
        { event: 'connector.destination_unreachable', label: r.cfg.label, destination: destinationOf(r.cfg) },
        `${r.cfg.label}: ${reason}`,
      );
    if (!r.withdrawn) {
      r.withdrawn = true;
      this.session?.send({ type: 'withdraw', label: r.cfg.label, reason });
    }
    if (r.probe === undefined) this.scheduleProbe(r);
  }

  private markReachable(r: Repo): void {
    this.stopProbe(r);
    r.state = r.leasedOn && r.leasedOn === this.session ? 'active' : 'pending';
    r.reason = null;
    if (r.withdrawn) {
      r.withdrawn = false;
      this.session?.send({ type: 'restore', label: r.cfg.label });
    }
    this.log.info(
      { event: 'connector.destination_reachable', label: r.cfg.label, destination: destinationOf(r.cfg) },
      `${r.cfg.label}: destination reachable again`,
    );
  }

  private scheduleProbe(r: Repo): void {
    if (this.health.has(r.cfg.label)) return; // its health check decides when it is back
    r.probe = this.clock.setTimeout(() => {
      r.probe = undefined;
      if (this.stopped || this.repos.get(r.cfg.label) !== r || r.state !== 'unreachable') return;
      this.dial(r.cfg.host, r.cfg.port, this.cfg.dialTimeout).then(
        (sock) => {
          closeGently(sock);
          if (this.repos.get(r.cfg.label) === r && r.state === 'unreachable') this.markReachable(r);
        },
        (e: Error) => {
          if (this.repos.get(r.cfg.label) !== r || r.state !== 'unreachable') return;
          r.reason = `destination unreachable: ${destinationOf(r.cfg)}: ${e.message}`;
          this.scheduleProbe(r);
        },
      );
    }, this.probeInterval);
  }

  private stopProbe(r: Repo): void {
    if (r.probe !== undefined) this.clock.clearTimeout(r.probe);
    r.probe = undefined;
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
    const reconnect =
      gatewayText(prev.gateway, prev.transport) !== gatewayText(next.gateway, next.transport) ||
      JSON.stringify(prev.transport) !== JSON.stringify(next.transport) ||
      prev.tenant !== next.tenant ||
      prev.sshKey !== next.sshKey ||
      prev.gatewayFingerprint !== next.gatewayFingerprint ||
      prev.keepaliveInterval !== next.keepaliveInterval ||
      prev.keepaliveCountMax !== next.keepaliveCountMax ||
      prev.maxWindow !== next.maxWindow;
    if (prev.stateDir !== next.stateDir) {
      throw new TetherError(
        'RELOAD_STATE_DIR',
        `${next.file}: state_dir cannot change while the connector runs (stop it, then start it again)`,
        { status: 400 },
      );
    }
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

    const result: ReloadResult = { added: [], removed: [], changed: [], reconnect };
    const nextByLabel = new Map(next.repositories.map((r) => [r.label, r]));
    for (const [label, r] of [...this.repos]) {
      if (nextByLabel.has(label)) continue;
      this.repos.delete(label);
      r.gen++;
      this.stopProbe(r);
      this.health.remove(label);
      result.removed.push(label);
      if (this.session && r.leasePort !== null && r.leasedOn === this.session) {
        this.session.unforward(label, r.leasePort).catch((e: Error) => {
          this.log.warn(
            { event: 'connector.unforward_failed', label },
            `could not cancel the forward ${label}: ${e.message}`,
          );
        });
      }
      for (const h of r.live) h.close();
    }
    this.cfg = next;
    if (newKey) this.key = newKey;
    if (newTransport) this.transport = newTransport;
    for (const rc of next.repositories) {
      const r = this.repos.get(rc.label);
      if (!r) {
        const fresh = this.newRepo(rc);
        this.repos.set(rc.label, fresh);
        result.added.push(rc.label);
        if (!reconnect) this.requestForward(fresh);
        continue;
      }
      if (!sameTarget(r.cfg, rc)) {
        result.changed.push(rc.label);
        r.cfg = rc;
        this.stopProbe(r);
        if (r.state === 'unreachable') {
          r.state = r.leasedOn === this.session && r.leasePort !== null ? 'active' : 'pending';
          r.reason = null;
        }
        if (r.withdrawn) {
          r.withdrawn = false;
          this.session?.send({ type: 'restore', label: rc.label });
        }
        this.session?.send(metaOf(rc));
      } else {
        r.cfg = rc;
      }
      // A refused forward may fit now (others removed, quota raised): ask again.
      if (r.state === 'rejected' && !reconnect) this.requestForward(r);
    }
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
        `not connected to the gateway ${gatewayText(this.cfg.gateway, this.cfg.transport)}${this.lastError ? `: ${this.lastError}` : ''}`,
        { status: 503 },
      );
    }
    return this.session.ping();
  }

  status(): ConnectorStatus {
    const repositories: RepoStatus[] = [...this.repos.values()].map((r) => ({
      label: r.cfg.label,
      service: r.cfg.service,
      uri: r.cfg.uri,
      destination: destinationOf(r.cfg),
      leasePort: r.leasePort,
      state: r.state,
      reason: r.reason,
      connections: r.connections,
      totalConnections: r.totalConnections,
      bytesIn: r.bytesIn,
      bytesOut: r.bytesOut,
      dialFailures: r.dialFailures,
    }));
    const next = this.backoff.nextAt;
    return {
      pid: process.pid,
      config: this.cfg.file,
      state: this.state,
      connected: this.session !== undefined,
      gateway: gatewayText(this.cfg.gateway, this.cfg.transport),
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
    };
  }
}
