import type http from 'node:http';
import type { TenantEvents } from '../core/events.js';
import type { ForwardRegistry, LiveSession } from '../core/forward-registry.js';
import type { TenantService } from '../core/tenants.js';
import { isTetherError } from '../errors/index.js';
import { type LogEvent, type Logger, onLogEvents } from '../log/index.js';
import type { Store } from '../store/types.js';
import type { SourceAllowlists } from '../tunnel/source-allowlists.js';
import type { TenantView } from './schemas.js';
import { tenantViews } from './views.js';

export interface LiveEventsDeps {
  store: Store;
  tenants: TenantService;
  registry: ForwardRegistry;
  events: TenantEvents;
  log: Logger;
  nodeId: string | null;
  /** Source-address allowlists, shown read-only on the tenant page. */
  allowlists?: Pick<SourceAllowlists, 'view'>;
  /** How often throughput is sent, ms (default 1000). */
  interval?: number;
}

/** Per tenant, once a second: what moves right now. */
export interface TenantStats {
  sessions: number;
  connections: number;
  /** Bytes per second through the tenant's sessions: toward the connectors and back. */
  in_rate: number;
  out_rate: number;
}

export interface ForwardStats {
  connections: number;
  total_connections: number;
  /** Bytes of closed connections since the forward came up. */
  bytes_in: number;
  bytes_out: number;
}

export interface StatsMessage {
  time: string;
  tenants: Record<string, TenantStats>;
  /** Keyed by "<tenant> <label>". */
  forwards: Record<string, ForwardStats>;
}

/** One line of the activity feed: an event record, with only fields that are safe to show. */
export interface ActivityItem {
  time: string;
  event: string;
  level: string;
  msg?: string;
  [field: string]: unknown;
}

const ACTIVITY_FIELDS = [
  'tenant',
  'label',
  'port',
  'source',
  'reason',
  'code',
  'quota',
  'fingerprint',
  'front_door',
  'repository',
  'status',
  'bytes_in',
  'bytes_out',
  'duration_ms',
  'group',
];

const ACTIVITY_KEEP = 50;

/** One event record as the activity feed shows it: only the fields that are safe to show. */
function activityItem(e: LogEvent): ActivityItem {
  const item: ActivityItem = {
    time: new Date(e.time).toISOString(),
    event: e.fields.event,
    level: e.levelName,
    msg: e.msg,
  };
  const all = { ...e.bindings, ...e.fields };
  for (const k of ACTIVITY_FIELDS) {
    const v = all[k];
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') item[k] = v;
  }
  return item;
}

interface Client {
  res: http.ServerResponse;
}

/**
 * Server-sent events for the dashboard: a snapshot of every tenant on connect, then a tenant's
 * new view whenever its sessions, forwards, quota or keys change, the tenant's removal, the
 * activity feed (event records of the log), and throughput every second.
 */
export class LiveEvents {
  private readonly clients = new Set<Client>();
  private readonly pendingTenants = new Set<string>();
  /** The last event records, newest last (`activityItem` shapes them for the dashboard). */
  private readonly recent: LogEvent[] = [];
  private flushTimer?: NodeJS.Timeout;
  private statsTimer?: NodeJS.Timeout;
  /** Last traffic sample per session id. */
  private samples = new Map<string, { received: number; sent: number; at: number }>();
  private readonly unsubscribe: Array<() => void> = [];

  constructor(private readonly deps: LiveEventsDeps) {
    const { registry, events } = deps;
    const onSession = (e: { session: LiveSession }) => this.touch(e.session.tenant);
    const onForward = (e: { forward: { tenant: string } }) => this.touch(e.forward.tenant);
    // forwards and sessions other processes (workers) report
    const onRemote = (e?: { tenants: string[] }) => {
      for (const t of e?.tenants ?? []) this.touch(t);
    };
    registry.on('session', onSession);
    registry.on('forward', onForward);
    registry.on('remote', onRemote);
    this.unsubscribe.push(
      () => registry.off('session', onSession),
      () => registry.off('forward', onForward),
      () => registry.off('remote', onRemote),
      events.on((c) => this.touch(c.tenant)),
      onLogEvents(deps.log, (e) => {
        // Kept as logged and shaped for the dashboard only when one is watching (or asks for
        // the snapshot): a gateway nobody watches pays two array operations per record.
        this.recent.push(e);
        if (this.recent.length > ACTIVITY_KEEP) this.recent.shift();
        if (this.clients.size > 0) this.broadcast('activity', activityItem(e));
      }),
    );
  }

  get clientCount(): number {
    return this.clients.size;
  }

  /** Answers GET /v1/events (the caller checked the credentials). */
  async serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n\n');
    const client: Client = { res };
    const tenants = await this.views();
    if (res.destroyed) return;
    send(res, 'snapshot', { tenants, activity: this.recent.map(activityItem), stats: this.stats(false) });
    this.clients.add(client);
    this.startStats();
    const done = () => {
      this.clients.delete(client);
      if (this.clients.size === 0) this.stopStats();
    };
    req.once('close', done);
    res.once('close', done);
  }

  /** Ends every stream and stops listening. */
  close(): void {
    for (const u of this.unsubscribe.splice(0)) u();
    for (const c of this.clients) c.res.end();
    this.clients.clear();
    this.stopStats();
    if (this.flushTimer) clearTimeout(this.flushTimer);
  }

  /** Marks a tenant as changed; its view is sent shortly (changes within 100 ms are sent once). */
  private touch(tenant: string): void {
    if (this.clients.size === 0) return;
    this.pendingTenants.add(tenant);
    this.flushTimer ??= setTimeout(() => {
      this.flushTimer = undefined;
      void this.flush();
    }, 100);
  }

  private async flush(): Promise<void> {
    const ids = [...this.pendingTenants];
    this.pendingTenants.clear();
    for (const id of ids) {
      try {
        const row = await this.deps.tenants.get(id);
        const [view] = await tenantViews(
          this.deps.store,
          this.deps.registry,
          [row],
          this.deps.nodeId,
          this.deps.allowlists,
        );
        this.broadcast('tenant', { tenant: view });
      } catch (err) {
        if (isTetherError(err) && err.status === 404) this.broadcast('tenant-removed', { id });
        else this.deps.log.warn({ err, tenant: id }, 'dashboard: could not build the tenant view');
      }
    }
  }

  private async views(): Promise<TenantView[]> {
    const rows = await this.deps.tenants.list();
    return tenantViews(this.deps.store, this.deps.registry, rows, this.deps.nodeId, this.deps.allowlists);
  }

  private broadcast(event: string, data: unknown): void {
    for (const c of this.clients) send(c.res, event, data);
  }

  private startStats(): void {
    if (this.statsTimer) return;
    this.statsTimer = setInterval(
      () => this.broadcast('stats', this.stats(true)),
      this.deps.interval ?? 1000,
    );
    this.statsTimer.unref();
  }

  private stopStats(): void {
    if (this.statsTimer) clearInterval(this.statsTimer);
    this.statsTimer = undefined;
  }

  /** Throughput from the sessions' transport counters; connections and bytes from the registry. */
  stats(advance: boolean): StatsMessage {
    const now = Date.now();
    const tenants: Record<string, TenantStats> = {};
    const forTenant = (t: string) => {
      tenants[t] ??= { sessions: 0, connections: 0, in_rate: 0, out_rate: 0 };
      return tenants[t];
    };
    const next = new Map<string, { received: number; sent: number; at: number }>();
    for (const s of this.deps.registry.sessionsOf()) {
      const t = forTenant(s.tenant);
      t.sessions++;
      const traffic = s.traffic?.();
      if (!traffic) continue;
      const sample = { ...traffic, at: now };
      next.set(s.id, sample);
      const prev = this.samples.get(s.id);
      if (prev && now > prev.at) {
        const secs = (now - prev.at) / 1000;
        // Bytes the gateway sent on the tunnel go toward the connector ("in").
        t.in_rate += Math.max(0, Math.round((sample.sent - prev.sent) / secs));
        t.out_rate += Math.max(0, Math.round((sample.received - prev.received) / secs));
      }
    }
    if (advance) this.samples = next;
    const forwards: Record<string, ForwardStats> = {};
    for (const f of this.deps.registry.list()) {
      forTenant(f.tenant).connections += f.connections;
      forwards[`${f.tenant} ${f.label}`] = {
        connections: f.connections,
        total_connections: f.totalConnections,
        bytes_in: f.bytesIn,
        bytes_out: f.bytesOut,
      };
    }
    return { time: new Date(now).toISOString(), tenants, forwards };
  }
}

function send(res: http.ServerResponse, event: string, data: unknown): void {
  if (res.destroyed || res.writableEnded) return;
  res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}
