import { accessSync, chmodSync, constants, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dashboardRoutes } from '../admin/dashboard/index.js';
import type { WorkersView } from '../admin/events.js';
import { GatewayMetrics, type WorkerMetrics } from '../admin/metrics.js';
import type { DashboardSso } from '../admin/oidc-routes.js';
import { AdminServer } from '../admin/server.js';
import type { GatewayConfig } from '../config/gateway.js';
import type { ProxyProtocolListener } from '../config/proxy-protocol.js';
import { parseRepositoryUri } from '../config/uri.js';
import { ForwardAuthorizer, rangeText } from '../core/authorization.js';
import { type Clock, systemClock } from '../core/clock.js';
import type { Component } from '../core/component.js';
import { CONNECTION_AUDIT_DEFAULTS, ConnectionAudit } from '../core/connection-audit.js';
import { TenantEvents } from '../core/events.js';
import { ForwardRegistry } from '../core/forward-registry.js';
import { GroupKeyService } from '../core/group-keys.js';
import { LeaseService } from '../core/leases.js';
import type { UsageShare } from '../core/limits/usage.js';
import { TrafficLimits } from '../core/limits.js';
import { ManagedRepoService } from '../core/managed-repos.js';
import { RefusalLog } from '../core/refusals.js';
import { TenantService } from '../core/tenants.js';
import { FailureThrottle, ThrottleShare } from '../core/throttle.js';
import { TetherError } from '../errors/index.js';
import type { SecretShare } from '../frontdoor/http-proxy/upstream-auth/types.js';
import type { VerdictShare } from '../frontdoor/http-proxy/verifiers/types.js';
import { LeaseListeners } from '../frontdoor/raw-port/index.js';
import type { Logger } from '../log/index.js';
import { openStore } from '../store/index.js';
import type { Store } from '../store/types.js';
import { ConnectionBroker } from '../tunnel/broker.js';
import type { ListenFn } from '../tunnel/listen.js';
import { ManagedControl } from '../tunnel/managed-control.js';
import { ProxyProtocolGate } from '../tunnel/proxy-header.js';
import { TunnelServer } from '../tunnel/server.js';
import { SourceAllowlists } from '../tunnel/source-allowlists.js';
import type { SharedSlots } from '../tunnel/unauthenticated-slots.js';
import { type DrainResult, drainGateway } from './drain.js';
import { loadAdminToken, loadHostKey, sharedIdentity } from './identity.js';
import { WORKER_DEAD_AFTER_MS, type WorkerCounts, workerNode } from './workers/protocol.js';

export interface GatewayDeps {
  log: Logger;
  clock?: Clock;
  version: string;
  /** With `workers` > 1, which process this is (see src/gateway/workers/); absent: the only one. */
  role?: GatewayRole;
}

/**
 * The primary owns the store's upkeep (lease expiry), the admin API and the dashboard, and runs
 * no tunnel port or front door: its `tunnelAddress` is the workers' (known once one is ready).
 * A worker carries SSH sessions and front doors and serves no admin API; its slot names it in
 * the forward directory (`worker-<slot>`).
 */
export type GatewayRole =
  | {
      kind: 'primary';
      tunnelAddress: () => string;
      workerExtra: () => Record<string, string>;
      workerMetrics: () => Promise<WorkerMetrics[]>;
      /** The workers' figures and event records, for the dashboard. */
      workers: WorkersView;
      /** Resolves once the workers' held-back reports of forwards reached this process. */
      settle: () => Promise<void>;
      /** Connections and sessions in the workers now (asked, not the last report). */
      workerCounts: () => Promise<WorkerCounts>;
      /** What the workers' drains did, added up (once they exited). */
      workersDrained: () => Pick<DrainResult, 'asked' | 'moved' | 'cut'>;
      /** The bytes the workers count before they write them (its usage views, exact at once). */
      usage: UsageShare;
    }
  | {
      kind: 'worker';
      slot: number;
      /** The unauthenticated bounds of its listeners, counted by the primary for the whole gateway. */
      slots: SharedSlots;
      /** The HTTP front door's token verdicts, shared with the other workers (per route). */
      verdicts: (scope: string) => VerdictShare;
      /** Its upstream credentials as the other workers read them (per route). */
      secrets: (scope: string) => SecretShare;
      /** The bytes the other workers counted and did not write yet (traffic quotas). */
      usage: UsageShare;
      /** Opens the login listeners through the primary, which spreads them over the workers. */
      listen?: ListenFn;
    };

export interface GatewayAddresses {
  tunnel: string;
  admin: string;
  adminUrl: string;
  hostFingerprint: string;
  dataDir: string;
  forwards: string;
  extra: Record<string, string>;
}

/**
 * Builds a component from the running core, or returns undefined when the config leaves it off.
 * Each factory picks from the context exactly the deps its part declares (see front-doors.ts).
 */
export type ComponentFactory = (ctx: GatewayContext) => Component | undefined;

/** Everything a running gateway is made of; only the composition root sees all of it. */
export interface GatewayContext {
  config: GatewayConfig;
  log: Logger;
  clock: Clock;
  store: Store;
  events: TenantEvents;
  tenants: TenantService;
  groupKeys: GroupKeyService;
  registry: ForwardRegistry;
  /** Caps, quotas and byte counters per tenant (also reachable as registry.limits). */
  limits: TrafficLimits;
  /** Lease allocation, bounds and expiry; its claims feed the cluster directory. */
  leases: LeaseService;
  listeners: LeaseListeners;
  /** Owns every forwarded connection from accept to close (limits, bytes, lifecycle log, metrics). */
  broker: ConnectionBroker;
  /** One audit record per forwarded connection, written to the store in batches. */
  connectionAudit: ConnectionAudit;
  /** Source-address allowlists (allow_from, tunnel_from) per tenant and repository. */
  allowlists: SourceAllowlists;
  /** Logs and counts refusals by a bound (`bound.refused`). */
  refusals: RefusalLog;
  /** The PROXY-protocol gate of a listener, from its `proxy_protocol` and `trusted_proxies`. */
  proxyGate(listener: string, cfg: ProxyProtocolListener): ProxyProtocolGate;
  /** The login throttles' failures, shared between the processes under `workers`. */
  throttles: ThrottleShare;
  /** Under `workers` (in a worker): the unauthenticated bounds, counted by the primary. */
  sharedSlots?: SharedSlots;
  /**
   * Under `workers` with `worker_accept: primary` (in a worker): opens the lease ports and front
   * doors through the primary, which passes each of their connections to one worker.
   */
  listen?: ListenFn;
  /** Under `workers` (in a worker): the HTTP front door's token verdicts, shared by the workers. */
  sharedVerdicts?: (scope: string) => VerdictShare;
  /** Under `workers` (in a worker): the HTTP front door's upstream credentials, shared by the workers. */
  sharedSecrets?: (scope: string) => SecretShare;
  tunnel: TunnelServer;
  metrics: GatewayMetrics;
  /** The cluster member's `node_id` (null outside a cluster). */
  nodeId: string | null;
  /** Under `workers` > 1, which process this is; absent: the gateway's only one. */
  role?: GatewayRole;
}

function checkDataDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    accessSync(dir, constants.W_OK | constants.R_OK);
    // one probe per process: a primary and its workers check the same directory at once
    const probe = join(dir, `.write-test-${process.pid}`);
    writeFileSync(probe, '');
    rmSync(probe);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    throw new TetherError(
      'DATA_DIR_UNWRITABLE',
      `data dir ${dir} is not writable (${code}); set data_dir or TETHER_DATA_DIR to a writable directory`,
      { status: 400, cause: e },
    );
  }
}

export class Gateway {
  private ctx?: GatewayContext;
  private admin?: AdminServer;
  private readonly factories: ComponentFactory[] = [];
  private readonly components: Component[] = [];
  private expiryTimer?: NodeJS.Timeout;
  private limits?: TrafficLimits;
  private connectionAudit?: ConnectionAudit;
  private allowlists?: SourceAllowlists;
  private stopping?: Promise<void>;
  private draining?: Promise<DrainResult>;

  constructor(
    readonly config: GatewayConfig,
    private readonly deps: GatewayDeps,
  ) {}

  get context(): GatewayContext {
    if (!this.ctx) throw new Error('gateway not started');
    return this.ctx;
  }

  async start(): Promise<GatewayAddresses> {
    const { config } = this;
    const log = this.deps.log;
    const clock = this.deps.clock ?? systemClock;
    checkDataDir(config.data_dir);
    const dbFile = join(config.data_dir, 'tether.db');
    if (config.store === 'sqlite' && !existsSync(dbFile)) writeFileSync(dbFile, '', { mode: 0o600 });
    const store = await openStore(config.store, config.data_dir);
    if (config.store === 'sqlite') chmodSync(dbFile, 0o600);
    try {
      const shared =
        store.kind === 'postgres' && !config.tunnel.host_key
          ? await sharedIdentity(store, config.data_dir, config.admin.token_file)
          : undefined;
      const hostKey = shared?.hostKey ?? loadHostKey(config.data_dir, config.tunnel.host_key);
      const adminToken = shared?.adminToken ?? loadAdminToken(config.data_dir, config.admin.token_file);
      const nodeId = config.cluster?.node_id ?? null;
      const events = new TenantEvents();
      const tenants = new TenantService(store, clock, log, events, config.forwards.default_quota);
      const groupKeys = new GroupKeyService(store, clock, log, events);
      const registry = new ForwardRegistry(clock);
      const limits = new TrafficLimits(
        store,
        clock,
        log,
        this.deps.role ? { share: this.deps.role.usage } : {},
        events,
      );
      await limits.start();
      this.limits = limits;
      registry.limits = limits;
      const metrics = new GatewayMetrics(store, registry, { log, events, part: this.deps.role?.kind });
      const refusals = new RefusalLog(log, clock);
      const connectionAudit = new ConnectionAudit(store, clock, log, refusals, {
        ...CONNECTION_AUDIT_DEFAULTS,
        retention: config.audit.retention,
      });
      connectionAudit.start();
      this.connectionAudit = connectionAudit;
      const allowlists = new SourceAllowlists(store, clock, log, events);
      await allowlists.start();
      this.allowlists = allowlists;
      const broker = new ConnectionBroker({
        registry,
        clock,
        log,
        metrics,
        records: connectionAudit,
        allowlists,
        refusals,
      });
      const proxyGate = (listener: string, l: ProxyProtocolListener) =>
        new ProxyProtocolGate(
          listener,
          {
            mode: l.proxy_protocol,
            trustedProxies: l.trusted_proxies,
            timeoutMs: config.proxy_header.timeout,
            maxBytes: config.proxy_header.max_bytes,
            maxPending: config.proxy_header.max_pending,
          },
          { log, clock, refusals },
        );
      const listeners = new LeaseListeners(
        config.forwards.bind,
        registry,
        log,
        broker,
        proxyGate('forwards', config.forwards),
      );
      const role = this.deps.role;
      // Workers count each other's forwards through the store's directory, as cluster members do
      // (in a cluster, each worker is a node of it under its member's name).
      const cluster = config.cluster
        ? {
            nodeId: role?.kind === 'worker' ? workerNode(role.slot, nodeId) : config.cluster.node_id,
            deadAfter: config.cluster.dead_after,
          }
        : role
          ? {
              nodeId: role.kind === 'primary' ? 'primary' : workerNode(role.slot),
              deadAfter: WORKER_DEAD_AFTER_MS,
            }
          : undefined;
      const leases = new LeaseService(
        store,
        registry,
        clock,
        {
          range: config.forwards.ports,
          leaseTtl: config.forwards.lease_ttl,
          unusedLeaseTtl: config.forwards.unused_lease_ttl,
          leaseMargin: config.forwards.lease_margin,
        },
        log,
        refusals,
        cluster,
      );
      leases.watch();
      const authorizer = new ForwardAuthorizer(store, registry, config.forwards.ports, clock, {
        leases,
        cluster,
      });
      const managedRefusals = new RefusalLog(log, clock);
      const managed = new ManagedRepoService(
        store,
        clock,
        log,
        events,
        managedRefusals,
        (uri) => {
          const r = parseRepositoryUri(uri);
          return r.ok ? undefined : r.message;
        },
        config.forwards.max_managed,
      );
      const throttles = new ThrottleShare();
      const sharedSlots = role?.kind === 'worker' ? role.slots : undefined;
      // under `worker_accept: primary` the primary also passes on the lease ports' and front doors'
      // connections (under `os` the workers accept those themselves, through node's cluster module)
      const sharedListen =
        role?.kind === 'worker' && config.worker_accept === 'primary' ? role.listen : undefined;
      const authThrottle = new FailureThrottle(
        clock,
        {
          maxFailures: config.tunnel.login_throttle.max_failures,
          windowMs: config.tunnel.login_throttle.window,
          blockMs: config.tunnel.login_throttle.block_for,
        },
        { to: throttles, name: 'tunnel' },
      );
      const tunnel = new TunnelServer(
        {
          hostKey: hostKey.privateKey,
          algorithms: config.tunnel.algorithms,
          keepaliveInterval: config.tunnel.keepalive_interval,
          keepaliveCountMax: config.tunnel.keepalive_count_max,
          maxWindow: config.tunnel.max_window,
          authTimeout: config.tunnel.auth_timeout,
          maxUnauthenticated: config.tunnel.max_unauthenticated,
          maxUnauthenticatedPerSource: config.tunnel.max_unauthenticated_per_source,
          ...(sharedSlots
            ? {
                slots: sharedSlots(
                  'tunnel',
                  config.tunnel.max_unauthenticated,
                  config.tunnel.max_unauthenticated_per_source,
                ),
              }
            : {}),
          session: {
            maxSessionChannels: config.tunnel.max_session_channels,
            forwardRequestsPerSecond: config.tunnel.forward_requests.per_second,
            forwardRequestsBurst: config.tunnel.forward_requests.burst,
          },
          version: this.deps.version,
          nodeId: nodeId ?? undefined,
        },
        {
          store,
          tenants,
          authorizer,
          registry,
          leasePorts: listeners,
          authThrottle,
          clock,
          log,
          managed: new ManagedControl(managed, events, managedRefusals, () => clock.now(), log),
          refusals,
          allowlists,
          proxyGate: proxyGate('tunnel', config.tunnel),
          ...(role?.kind === 'worker' && role.listen ? { listen: role.listen } : {}),
          onRepoMeta: (tenant, label, meta) => {
            store
              .updateLease(tenant, label, meta, new Date(clock.now()).toISOString())
              .catch((err: unknown) => log.warn({ err }, 'could not store repository metadata'));
          },
        },
      );
      this.ctx = {
        config,
        log,
        clock,
        store,
        events,
        tenants,
        groupKeys,
        registry,
        limits,
        leases,
        listeners,
        broker,
        connectionAudit,
        allowlists,
        refusals,
        proxyGate,
        throttles,
        ...(sharedSlots ? { sharedSlots } : {}),
        ...(sharedListen ? { listen: sharedListen } : {}),
        ...(role?.kind === 'worker' ? { sharedVerdicts: role.verdicts, sharedSecrets: role.secrets } : {}),
        tunnel,
        metrics,
        nodeId,
        ...(role ? { role } : {}),
      };

      // A narrowed allowlist ends what it no longer admits: callers' open connections (every
      // front door goes through the broker) and connectors' sessions, here as on every member
      // and worker (each applies the change it hears).
      allowlists.onChanged((tenant) => {
        const connections = broker.cutRefused(tenant, (label, address) =>
          allowlists.callerRefusal(tenant, label, address),
        );
        const sessions = registry.endTenant(tenant, (s) => {
          const why = s.address === undefined ? undefined : allowlists.tunnelRefusal(tenant, s.address);
          return why === undefined ? undefined : `${why} (the list changed)`;
        });
        if (connections + sessions === 0) return;
        log.info(
          { event: 'tenant.allowlists_enforced', tenant, connections, sessions },
          `source allowlists of ${tenant} narrowed: ended ${connections} connection(s) and ${sessions} session(s) from addresses they no longer admit`,
        );
      });

      events.on((c) => {
        switch (c.kind) {
          case 'removed':
            registry.endTenant(c.tenant, 'tenant removed');
            break;
          case 'quota':
            if (c.quota === 0) registry.endTenant(c.tenant, 'tenant disabled (quota 0)');
            break;
          case 'keys-replaced':
            registry.endTenant(c.tenant, 'tenant keys replaced');
            break;
          case 'key-removed':
            registry.endTenant(c.tenant, (s) =>
              s.fingerprint === c.fingerprint ? 'key removed' : undefined,
            );
            break;
          default:
        }
      });

      // a worker's listeners (tunnel, lease ports, front doors) are shared through the primary
      if (role?.kind === 'worker') listeners.sharedPorts = true;
      if (sharedListen) listeners.listen = sharedListen;
      const tunnelAddr =
        role?.kind === 'primary'
          ? undefined
          : await tunnel.listen(config.tunnel.listen.host, config.tunnel.listen.port);
      // single sign-on (openid-client and its JOSE stack) is loaded only when configured
      let sso: DashboardSso | undefined;
      if (config.admin.oidc) {
        const { DashboardSso } = await import('../admin/oidc-routes.js');
        sso = new DashboardSso(config.admin.oidc, { log, clock });
      }
      const admin =
        role?.kind === 'worker'
          ? undefined
          : new AdminServer({
              token: adminToken,
              store,
              tenants,
              groupKeys,
              registry,
              ...(role?.kind === 'primary' ? { settle: role.settle } : {}),
              limits,
              allowlists,
              events,
              log,
              nodeId,
              version: this.deps.version,
              metrics: async () =>
                role?.kind === 'primary' ? metrics.renderWith(await role.workerMetrics()) : metrics.render(),
              sso,
              managed,
              extra: dashboardRoutes({
                token: adminToken,
                store,
                tenants,
                registry,
                events,
                log,
                nodeId,
                sso,
                allowlists,
                ...(role?.kind === 'primary' ? { workers: role.workers } : {}),
              }),
            });
      this.admin = admin;
      const adminAddr = admin && (await admin.listen(config.admin.listen.host, config.admin.listen.port));
      const extra: Record<string, string> = {};
      for (const make of this.factories) {
        const c = make(this.ctx);
        if (!c) continue;
        this.components.push(c);
        extra[c.name] = await c.start();
      }

      // Lease upkeep (expiry, the per-tenant bound) runs often enough for the short TTL of
      // never-used leases; the first run waits one interval so connectors can come back first.
      // (Under `workers`, the primary alone does it.)
      if (role?.kind !== 'worker') {
        const sweepEvery = Math.min(
          10 * 60_000,
          Math.max(1_000, Math.floor(config.forwards.unused_lease_ttl / 4)),
        );
        let sweeping = false;
        this.expiryTimer = setInterval(() => {
          if (sweeping) return;
          sweeping = true;
          leases
            .sweep()
            .catch((err: unknown) => log.warn({ err }, 'lease expiry failed'))
            .finally(() => {
              sweeping = false;
            });
        }, sweepEvery);
        this.expiryTimer.unref();
      }

      if (role?.kind === 'primary') Object.assign(extra, role.workerExtra());
      const fmt = (a: { address: string; port: number }) =>
        a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
      const addresses: GatewayAddresses = {
        tunnel: tunnelAddr ? fmt(tunnelAddr) : role?.kind === 'primary' ? role.tunnelAddress() : '',
        admin: adminAddr ? fmt(adminAddr) : '',
        adminUrl: adminAddr ? `http://${fmt(adminAddr)}` : '',
        hostFingerprint: hostKey.fingerprint,
        dataDir: config.data_dir,
        forwards: `${config.forwards.bind} ports ${rangeText(config.forwards.ports)}`,
        extra,
      };
      // what `tether tenants` reads to find the admin API: the process that serves it writes it
      if (admin)
        writeFileSync(
          join(config.data_dir, 'gateway.json'),
          `${JSON.stringify({ pid: process.pid, admin_url: addresses.adminUrl, tunnel: addresses.tunnel, host_fingerprint: hostKey.fingerprint, ...extra }, null, 2)}\n`,
          { mode: 0o600 },
        );
      return addresses;
    } catch (e) {
      await this.stop().catch(() => {});
      await store.close().catch(() => {});
      throw e;
    }
  }

  /** Adds a front door or transport; built and started after the core, stopped before it. */
  use(factory: ComponentFactory): this {
    this.factories.push(factory);
    return this;
  }

  /**
   * SIGTERM: stop accepting, ask connectors to move, let open connections finish until
   * `drain_timeout` after `startedAt` (see drain.ts), then stop. Undefined when the gateway was
   * not running (or already stopping): it just stops.
   */
  async drain(startedAt?: number): Promise<DrainResult | undefined> {
    const ctx = this.ctx;
    if (!ctx || this.stopping) {
      await this.stop();
      return undefined;
    }
    this.draining ??= drainGateway(ctx, this.components, {
      timeoutMs: this.config.drain_timeout,
      startedAt: startedAt ?? ctx.clock.now(),
      handover: this.config.cluster !== undefined,
    });
    const r = await this.draining;
    await this.stop();
    return r;
  }

  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    if (this.expiryTimer) clearInterval(this.expiryTimer);
    const ctx = this.ctx;
    for (const c of [...this.components].reverse()) await c.stop().catch(() => {});
    if (!ctx) {
      await this.limits?.stop().catch(() => {});
      await this.connectionAudit?.stop().catch(() => {});
      return;
    }
    await ctx.tunnel.close();
    await ctx.listeners.closeAll();
    ctx.broker.cutAll();
    // Connections just cut report their bytes as they close: wait for them (briefly), then
    // write the counters, so they survive the restart.
    const deadline = Date.now() + 2000;
    while (ctx.registry.openConnections() > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    this.allowlists?.stop();
    await this.limits
      ?.stop()
      .catch((err: unknown) => ctx.log.warn({ err }, 'could not write traffic counters'));
    await this.connectionAudit
      ?.stop()
      .catch((err: unknown) => ctx.log.warn({ err }, 'could not write connection audit records'));
    await this.admin?.close();
    await ctx.store.close();
  }
}
