import type http from 'node:http';
import type { TenantEvents } from '../core/events.js';
import type { ForwardRegistry, LiveSession } from '../core/forward-registry.js';
import type { TenantService } from '../core/tenants.js';
import { isTetherError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import type { Store } from '../store/types.js';
import type { SourceAllowlists } from '../tunnel/source-allowlists.js';
import { type ActivityItem, latestActivity, RecentActivity } from './activity.js';
import type { TenantView } from './schemas.js';
import { mergeStats, type StatsMessage, TrafficSampler } from './traffic-stats.js';
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
  /** Under `workers` (the primary): the workers' figures and records, shown with its own. */
  workers?: WorkersView;
}

/** What the primary's dashboard reads of its workers (each answers for what it carries). */
export interface WorkersView {
  stats(advance: boolean): Promise<StatsMessage[]>;
  /** Each worker's last records. */
  activity(): Promise<ActivityItem[][]>;
  /** Every worker's new records go to `fn` while it is set (undefined: stop). */
  watch(fn: ((item: ActivityItem) => void) | undefined): void;
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
  /** The last event records of this process's log, and each new one while a dashboard watches. */
  private readonly activity: RecentActivity;
  private flushTimer?: NodeJS.Timeout;
  private statsTimer?: NodeJS.Timeout;
  private readonly sampler: TrafficSampler;
  /** A sample is being taken (under `workers` it waits for the workers' answers). */
  private sampling = false;
  private readonly unsubscribe: Array<() => void> = [];

  constructor(private readonly deps: LiveEventsDeps) {
    const { registry, events } = deps;
    this.sampler = new TrafficSampler(registry);
    this.activity = new RecentActivity(deps.log);
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
    const [tenants, stats, elsewhere] = await Promise.all([
      this.views(),
      this.stats(false),
      this.deps.workers?.activity() ?? [],
    ]);
    if (res.destroyed) return;
    const activity = latestActivity([this.activity.items(), ...elsewhere]);
    send(res, 'snapshot', { tenants, activity, stats });
    this.clients.add(client);
    if (this.clients.size === 1) this.watch(true);
    const done = () => {
      if (!this.clients.delete(client)) return;
      if (this.clients.size === 0) this.watch(false);
    };
    req.once('close', done);
    res.once('close', done);
  }

  /** Ends every stream and stops listening. */
  close(): void {
    for (const u of this.unsubscribe.splice(0)) u();
    for (const c of this.clients) c.res.end();
    this.clients.clear();
    this.watch(false);
    this.activity.close();
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

  /** While a dashboard watches: new records as they are logged, and the figures every second. */
  private watch(on: boolean): void {
    const item = on ? (a: ActivityItem) => this.broadcast('activity', a) : undefined;
    this.activity.watch(item);
    this.deps.workers?.watch(item);
    if (on) this.startStats();
    else this.stopStats();
  }

  private startStats(): void {
    if (this.statsTimer) return;
    this.statsTimer = setInterval(() => {
      if (this.sampling) return;
      this.sampling = true;
      this.stats(true)
        .then(
          (stats) => this.broadcast('stats', stats),
          (err: unknown) => this.deps.log.warn({ err }, 'dashboard: could not take the traffic figures'),
        )
        .finally(() => {
          this.sampling = false;
        });
    }, this.deps.interval ?? 1000);
    this.statsTimer.unref();
  }

  private stopStats(): void {
    if (this.statsTimer) clearInterval(this.statsTimer);
    this.statsTimer = undefined;
  }

  /**
   * The live figures: this process's, and under `workers` (in the primary) every worker's, added
   * up. A worker that does not answer in time is left out of this one sample.
   */
  private async stats(advance: boolean): Promise<StatsMessage> {
    const own = this.sampler.stats(advance);
    if (!this.deps.workers) return own;
    return mergeStats([own, ...(await this.deps.workers.stats(advance))], own.time);
  }
}

function send(res: http.ServerResponse, event: string, data: unknown): void {
  if (res.destroyed || res.writableEnded) return;
  res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}
