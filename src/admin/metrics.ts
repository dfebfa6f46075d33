import client from 'prom-client';
import { BoundedLabels } from '../core/bounded-labels.js';
import type { TenantEvents } from '../core/events.js';
import type { ForwardRegistry, LiveForward, LiveSession } from '../core/forward-registry.js';
import { type LogEvent, type Logger, onLogEvents } from '../log/index.js';
import type { Store } from '../store/types.js';
import type { ClosedConnection, ConnectionMetricsSink, FrontDoorName } from '../tunnel/broker.js';

export interface GatewayMetricsOptions {
  /** Event records of this logger (auth failures, refused forwards, front-door requests) feed counters. */
  log?: Logger;
  /** At most this many tenants get their own label value; the others share "_other" (default 500). */
  maxTenantLabels?: number;
  /**
   * Under `workers`: a worker leaves the figures read from the store (tenants, forwards by state)
   * to the primary, whose forwards are its workers' (remote ones); the primary sums the rest.
   */
  part?: 'primary' | 'worker';
  /**
   * Tenant changes: a tenant removed in another process (a worker hears of the primary's
   * removal, a member of another member's) loses its series here too.
   */
  events?: Pick<TenantEvents, 'on'>;
}

const sessionKey = (s: { tenant: string; fingerprint: string }) => `${s.tenant}\0${s.fingerprint}`;

/** A session that opened or closed, as the workers tell each other (reconnects are counted across them). */
export interface SessionChange {
  type: 'opened' | 'closed';
  tenant: string;
  fingerprint: string;
}

/** One worker's figures, as its registry's `getMetricsAsJSON()` gives them. */
export type WorkerMetrics = Awaited<ReturnType<client.Registry['getMetricsAsJSON']>>;

/** "tenant disabled (quota 0)" → "tenant_disabled". */
export function reasonLabel(text: string): string {
  return (
    text
      .toLowerCase()
      .replace(/\(.*?\)/g, '')
      .trim()
      .replace(/[^a-z0-9]+/g, '_')
      .replace(/^_+|_+$/g, '')
      .slice(0, 40) || 'unknown'
  );
}

/** Access-proxy refusals that are about the caller's credentials. */
const ACCESS_PROXY_AUTH_CODES = new Set([
  'PROXY_AUTHENTICATION_REQUIRED',
  'PROXY_AUTHORIZATION_MALFORMED',
  'WRONG_GROUP_KEY',
  'TENANT_MISMATCH',
  'TOO_MANY_FAILURES',
]);

const SETUP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300, 1800, 3600];

/** Whether every endpoint of a live forward has said its destination is unreachable. */
function withdrawn(f: LiveForward): boolean {
  return f.endpoints.length > 0 && f.endpoints.every((e) => e.withdrawn);
}

/**
 * Prometheus metrics of one gateway (a registry per instance: no globals). Gauges are read from
 * the live registry and the store when scraped; counters are fed by registry events and by the
 * event records of the log (the same records the audit log writes).
 */
export class GatewayMetrics implements ConnectionMetricsSink {
  readonly registry = new client.Registry();
  readonly connectionsOpened: client.Counter<'tenant'>;
  readonly bytes: client.Counter<'tenant' | 'direction'>;
  readonly authFailures: client.Counter<'reason'>;
  readonly forwardsRefused: client.Counter<'code'>;
  readonly forwardsGranted: client.Counter;
  readonly sessionsOpened: client.Counter;
  readonly reconnects: client.Counter<'tenant'>;
  readonly frontDoorRequests: client.Counter<'front_door' | 'outcome'>;
  readonly frontDoorDuration: client.Histogram<'front_door' | 'outcome'>;
  readonly httpProxyRequests: client.Counter<'route' | 'status'>;
  /** Inputs refused by a bound (see `bound.refused` log records): one series per bound. */
  readonly refused: client.Counter<'reason'>;
  private readonly bounds = new BoundedLabels(60, 'other');
  /** Label children of the HTTP front door's series, per route and status (no hashing per request). */
  private readonly httpChildren = new Map<
    string,
    {
      route: client.Counter.Internal;
      request: client.Counter.Internal;
      duration: client.Histogram.Internal<'front_door' | 'outcome'>;
    }
  >();
  readonly connectionSetup: client.Histogram;
  /** Primary under `workers`: restarts of workers that died. */
  readonly workerRestarts?: client.Counter;
  private readonly tenantLabels: BoundedLabels;
  private readonly reasons = new BoundedLabels(40, 'other');
  private readonly codes = new BoundedLabels(40, 'OTHER');
  /** tenant\0fingerprint of sessions that closed: the next open of one is a reconnect. */
  private readonly closedSessions = new Map<string, true>();
  /**
   * Under `workers`: passes this process's session opens and closes to the other workers, so a
   * connector that comes back on another worker counts as a reconnect there.
   */
  shareSessions?: (e: SessionChange) => void;
  private readonly unsubscribe: Array<() => void> = [];

  constructor(store: Store, live: ForwardRegistry, opts: GatewayMetricsOptions = {}) {
    const r = this.registry;
    const tenants = new BoundedLabels(opts.maxTenantLabels ?? 500);
    this.tenantLabels = tenants;
    client.collectDefaultMetrics({ register: r, prefix: 'tether_' });
    if (opts.part === 'primary') {
      this.workerRestarts = new client.Counter({
        name: 'tether_worker_restarts_total',
        help: 'Worker processes restarted after they died (workers)',
        registers: [r],
      });
    }
    if (opts.part !== 'worker') this.storeGauges(store, live, opts.part === 'primary');
    new client.Gauge({
      name: 'tether_sessions',
      help: 'Live SSH sessions of connectors',
      registers: [r],
      collect() {
        this.set(live.sessionsOf().length);
      },
    });
    new client.Gauge({
      name: 'tether_connections_active',
      help: 'Connections open through forwards, by tenant',
      labelNames: ['tenant'],
      registers: [r],
      collect() {
        const by = new Map<string, number>();
        for (const f of live.list()) {
          const t = tenants.get(f.tenant);
          by.set(t, (by.get(t) ?? 0) + f.connections);
        }
        this.reset();
        for (const [tenant, n] of by) this.set({ tenant }, n);
      },
    });
    this.connectionsOpened = new client.Counter({
      name: 'tether_connections_opened_total',
      help: 'Connections opened through forwards, by tenant',
      labelNames: ['tenant'],
      registers: [r],
    });
    this.bytes = new client.Counter({
      name: 'tether_bytes_total',
      help: 'Bytes carried by closed connections, by tenant; direction "in" is toward the connector, "out" back to the caller',
      labelNames: ['tenant', 'direction'],
      registers: [r],
    });
    this.authFailures = new client.Counter({
      name: 'tether_auth_failures_total',
      help: 'Refused logins by reason (tunnel: unknown_tenant, key_not_registered, tenant_disabled, bad_signature, invalid_tenant_id, throttled; front doors: access_proxy_*, http_proxy, ssh_proxy)',
      labelNames: ['reason'],
      registers: [r],
    });
    this.forwardsRefused = new client.Counter({
      name: 'tether_forwards_refused_total',
      help: 'Refused forward requests by code',
      labelNames: ['code'],
      registers: [r],
    });
    this.refused = new client.Counter({
      name: 'tether_refused_total',
      help: 'Inputs refused because a bound was reached or the input was invalid, by reason (the bound or check that refused it: leases_per_tenant, channels_per_session, unauthenticated_per_source, bad_repo_meta, http_smuggling, …)',
      labelNames: ['reason'],
      registers: [r],
    });
    this.forwardsGranted = new client.Counter({
      name: 'tether_forwards_granted_total',
      help: 'Granted forward requests',
      registers: [r],
    });
    this.sessionsOpened = new client.Counter({
      name: 'tether_sessions_opened_total',
      help: 'SSH sessions opened by connectors',
      registers: [r],
    });
    this.reconnects = new client.Counter({
      name: 'tether_reconnects_total',
      help: 'Sessions opened again with a key whose earlier session had closed, by tenant',
      labelNames: ['tenant'],
      registers: [r],
    });
    this.frontDoorRequests = new client.Counter({
      name: 'tether_frontdoor_requests_total',
      help: 'Requests and connections received by the front doors, by outcome',
      labelNames: ['front_door', 'outcome'],
      registers: [r],
    });
    this.frontDoorDuration = new client.Histogram({
      name: 'tether_frontdoor_duration_seconds',
      help: 'How long front-door requests and connections lasted, from accept to close (with the outcome where the front door reports one)',
      labelNames: ['front_door', 'outcome'],
      buckets: DURATION_BUCKETS,
      registers: [r],
    });
    this.httpProxyRequests = new client.Counter({
      name: 'tether_http_proxy_requests_total',
      help: 'Requests answered by the HTTP front door, by route and status (0: the caller left before an answer)',
      labelNames: ['route', 'status'],
      registers: [r],
    });
    this.connectionSetup = new client.Histogram({
      name: 'tether_connection_setup_seconds',
      help: 'Time to open a channel to the connector for a new connection',
      buckets: SETUP_BUCKETS,
      registers: [r],
    });

    const onSession = (e: { type: string; session: LiveSession }) => {
      if (e.type === 'opened') {
        this.sessionsOpened.inc();
        if (this.closedSessions.delete(sessionKey(e.session)))
          this.reconnects.inc({ tenant: tenants.get(e.session.tenant) });
      } else if (e.type === 'closed') {
        this.sessionClosed(sessionKey(e.session));
      }
      if (e.type === 'opened' || e.type === 'closed')
        this.shareSessions?.({ type: e.type, tenant: e.session.tenant, fingerprint: e.session.fingerprint });
    };
    live.on('session', onSession);
    this.unsubscribe.push(() => live.off('session', onSession));
    if (opts.log) this.unsubscribe.push(onLogEvents(opts.log, (e) => this.observe(e)));
    if (opts.events)
      this.unsubscribe.push(
        opts.events.on((c) => {
          if (c.kind === 'removed') this.forgetTenant(c.tenant);
        }),
      );
  }

  /** A session opened or closed on another worker (see `shareSessions`); nothing is counted here. */
  sessionElsewhere(e: SessionChange): void {
    if (e.type === 'opened') this.closedSessions.delete(sessionKey(e));
    else this.sessionClosed(sessionKey(e));
  }

  private sessionClosed(k: string): void {
    this.closedSessions.delete(k);
    this.closedSessions.set(k, true);
    if (this.closedSessions.size > 10_000) {
      const oldest = this.closedSessions.keys().next().value;
      if (oldest !== undefined) this.closedSessions.delete(oldest);
    }
  }

  /**
   * The broker opened a forwarded connection: one more for its tenant and the channel's setup
   * time; on the raw port (no authorization step of its own) the connection is the front-door
   * request, so it is counted there as opened.
   */
  connectionOpened(e: { frontDoor: FrontDoorName; tenant: string; setupMs?: number }): void {
    this.connectionsOpened.inc({ tenant: this.tenantLabels.get(e.tenant) });
    if (e.setupMs !== undefined) this.connectionSetup.observe(e.setupMs / 1000);
    if (e.frontDoor === 'raw_port') this.frontDoorRequests.inc({ front_door: 'raw_port', outcome: 'opened' });
  }

  /** The broker refused a connection (offline, withdrawn, a cap, the quota): a raw-port request refused. */
  connectionRefused(e: { frontDoor: FrontDoorName; tenant: string; reason: string }): void {
    if (e.frontDoor === 'raw_port')
      this.frontDoorRequests.inc({ front_door: 'raw_port', outcome: 'refused' });
  }

  /**
   * A forwarded connection closed: its bytes by tenant, and, where the connection is the
   * front door's unit (raw port, access proxy), its duration. The HTTP and SSH front doors
   * report their requests and sessions themselves (`httpProxyResponse`, `frontDoorRequest`).
   */
  connectionClosed(e: ClosedConnection): void {
    const tenant = this.tenantLabels.get(e.tenant);
    this.bytes.inc({ tenant, direction: 'in' }, e.bytesIn);
    this.bytes.inc({ tenant, direction: 'out' }, e.bytesOut);
    if (e.frontDoor === 'raw_port' || e.frontDoor === 'access_proxy')
      this.frontDoorDuration.observe({ front_door: e.frontDoor }, e.durationMs / 1000);
  }

  /** A front door reports one request or connection (and how long it took, when known). */
  frontDoorRequest(frontDoor: string, outcome: string, seconds?: number): void {
    this.frontDoorRequests.inc({ front_door: frontDoor, outcome });
    if (seconds !== undefined) this.frontDoorDuration.observe({ front_door: frontDoor, outcome }, seconds);
  }

  /**
   * The HTTP front door ended a request: one front-door request with its status class as the
   * outcome ("2xx" … "5xx", "aborted" when no answer was sent), its duration, and the count per
   * route and status. Route names come from gateway.yaml, so the label set is bounded.
   */
  httpProxyResponse(route: string, status: number, seconds?: number): void {
    const k = `${route}\0${status}`;
    let c = this.httpChildren.get(k);
    if (!c) {
      const outcome = status === 0 ? 'aborted' : `${Math.floor(status / 100)}xx`;
      c = {
        route: this.httpProxyRequests.labels({ route, status: String(status) }),
        request: this.frontDoorRequests.labels({ front_door: 'http_proxy', outcome }),
        duration: this.frontDoorDuration.labels({ front_door: 'http_proxy', outcome }),
      };
      this.httpChildren.set(k, c);
    }
    c.route.inc();
    c.request.inc();
    if (seconds !== undefined) c.duration.observe(seconds);
  }

  /** Feeds counters from one event record of the log. */
  observe(e: LogEvent): void {
    const f = e.fields;
    const str = (v: unknown) => (typeof v === 'string' ? v : '');
    switch (f.event) {
      case 'auth.failed':
        this.authFailures.inc({ reason: this.reasons.get(reasonLabel(str(f.reason))) });
        return;
      case 'auth.throttled':
        this.authFailures.inc({ reason: 'throttled' });
        return;
      case 'bound.refused': {
        // one record may stand for a burst of refusals (`count`), logged once per burst
        const n = typeof f.count === 'number' && f.count > 0 ? f.count : 1;
        this.refused.inc({ reason: this.bounds.get(reasonLabel(str(f.reason))) }, n);
        return;
      }
      case 'forward.granted':
        this.forwardsGranted.inc();
        return;
      case 'forward.refused':
        this.forwardsRefused.inc({ code: this.codes.get(str(f.code) || 'UNKNOWN') });
        return;
      case 'access_proxy.allowed':
        this.frontDoorRequests.inc({ front_door: 'access_proxy', outcome: 'allowed' });
        return;
      case 'access_proxy.denied': {
        this.frontDoorRequests.inc({ front_door: 'access_proxy', outcome: 'denied' });
        const code = str(f.code);
        if (ACCESS_PROXY_AUTH_CODES.has(code))
          this.authFailures.inc({ reason: `access_proxy_${code.toLowerCase()}` });
        return;
      }
      case 'ssh_proxy.session.started':
        this.frontDoorRequests.inc({ front_door: 'ssh_proxy', outcome: 'started' });
        return;
      case 'ssh_proxy.session.ended':
        if (typeof f.duration_ms === 'number')
          this.frontDoorDuration.observe({ front_door: 'ssh_proxy' }, f.duration_ms / 1000);
        return;
      case 'tenant.removed':
        this.forgetTenant(str(f.tenant));
        return;
      default:
    }
  }

  /** Drops the per-tenant series of a removed tenant (keeps label sets bounded). */
  private forgetTenant(tenant: string): void {
    if (!tenant || !this.tenantLabels.forget(tenant)) return;
    this.connectionsOpened.remove({ tenant });
    this.reconnects.remove({ tenant });
    this.bytes.remove({ tenant, direction: 'in' });
    this.bytes.remove({ tenant, direction: 'out' });
  }

  private storeGauges(store: Store, live: ForwardRegistry, remoteOnline: boolean): void {
    new client.Gauge({
      name: 'tether_tenants',
      help: 'Tenants in the store',
      registers: [this.registry],
      async collect() {
        this.set((await store.listTenants()).length);
      },
    });
    new client.Gauge({
      name: 'tether_forwards',
      help: 'Forwards by state: online (lease port listening), withdrawn (its connectors cannot reach the destination), offline (leased, no connector)',
      labelNames: ['state'],
      registers: [this.registry],
      async collect() {
        const list = live.list();
        const down = list.filter(withdrawn).length;
        const leases = await store.listLeases();
        // the primary's forwards are its workers' (whether one is withdrawn only its worker
        // knows: the primary counts them online)
        const elsewhere = (t: string, l: string) => remoteOnline && live.remoteOf(t, l).length > 0;
        const offline = leases.filter(
          (l) => !live.get(l.tenant_id, l.label) && !elsewhere(l.tenant_id, l.label),
        ).length;
        const remote = remoteOnline
          ? new Set(live.remoteList().map((f) => `${f.tenant}\0${f.label}`)).size
          : 0;
        this.set({ state: 'online' }, list.length - down + remote);
        this.set({ state: 'withdrawn' }, down);
        this.set({ state: 'offline' }, offline);
      },
    });
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /**
   * The whole gateway's figures under `workers`: this (the primary's) registry and each worker's
   * (`getMetricsAsJSON()`), counters and gauges summed, as prom-client aggregates a cluster.
   */
  async renderWith(workers: ReadonlyArray<WorkerMetrics>): Promise<{ contentType: string; body: string }> {
    const own = await this.registry.getMetricsAsJSON();
    const all = client.AggregatorRegistry.aggregate([own, ...workers]);
    return { contentType: all.contentType, body: await all.metrics() };
  }

  /** Stops listening to the registry and the log. */
  close(): void {
    for (const u of this.unsubscribe.splice(0)) u();
  }
}
