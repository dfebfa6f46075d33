import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { isTetherError, TetherError } from '../errors/index.js';
import type { RepoMeta } from '../store/types.js';
import type { Clock } from './clock.js';
import type { Admission, TrafficLimits } from './limits.js';

/** One connector's offer of a forward: how to open a stream to it. */
export interface ForwardEndpoint {
  readonly session: LiveSession;
  /** Opens a channel to the connector for this forward. */
  open(origin: { address: string; port: number }): Promise<Duplex>;
  /** Set when the connector says it cannot reach the destination. */
  withdrawn?: string;
  connections: number;
  /** What this connector said about the repository (each connector may reach its own host). */
  meta?: RepoMeta | null;
}

/** A connected SSH session of a tenant (a connector or plain OpenSSH). */
export interface LiveSession {
  readonly id: string;
  readonly tenant: string;
  readonly source: string;
  /** The connector's address (`source` without the port), as tunnel_from judges it. */
  readonly address?: string;
  readonly since: number;
  readonly fingerprint: string;
  readonly agent: string;
  /** Bytes the session's transport has received and sent so far (live throughput), when known. */
  traffic?(): { received: number; sent: number };
  /** Ends the session and every connection it carries. */
  end(reason: string): void;
  /**
   * Asks the connector to reconnect elsewhere (the gateway drains); false when it cannot be
   * asked (plain OpenSSH: no control channel).
   */
  moveAway?(reason: string): boolean;
}

export interface LiveForward {
  readonly tenant: string;
  readonly label: string;
  readonly port: number;
  meta: RepoMeta | null;
  readonly endpoints: ForwardEndpoint[];
  connections: number;
  totalConnections: number;
  bytesIn: number;
  bytesOut: number;
  rr: number;
}

export interface OpenedConnection {
  stream: Duplex;
  forward: LiveForward;
  endpoint: ForwardEndpoint;
  /** Call once when the connection ends, with the bytes moved each way. */
  close(bytesIn: number, bytesOut: number): void;
  /**
   * Whether its connector still serves the forward here (its forward not cancelled, as a
   * connector that stops or moves does, nor withdrawn). A connection kept for more requests is
   * not used again once this is false. Absent for one relayed to another member or worker.
   */
  stillServed?(): boolean;
}

/** A forward served by another cluster member, from the shared directory. */
export interface RemoteForward {
  readonly tenant: string;
  readonly label: string;
  readonly port: number;
  readonly node: string;
  /** The member's advertised address; its lease listener is there. */
  readonly address: string;
  readonly connectors: number;
  /** Connections open through it there, when its member reports them (workers do). */
  readonly connections?: number;
  /** Its connectors there, when its member reports them (workers do). */
  readonly endpoints?: ReadonlyArray<RemoteEndpoint>;
  /**
   * Served by another worker of this gateway (reached over that worker's loopback relay port),
   * not by another cluster member: its lease port is not listened on here for it.
   */
  readonly sibling?: boolean;
}

/**
 * Where a connection may be relayed on from here: a caller's own connection anywhere; one another
 * cluster member relayed here only to this member's own workers; one another worker relayed here
 * nowhere. So a relayed connection never comes back (two holders whose connectors are all
 * withdrawn would otherwise pass a caller back and forth without end).
 */
export type RelayReach = 'any' | 'siblings' | 'none';

/** Who told the registry of forwards served elsewhere: the cluster's directory, or the primary (its workers'). */
export type RemoteSource = 'cluster' | 'workers';

/** A connector of a forward served by another process (a worker), as that process reports it. */
export interface RemoteEndpoint {
  readonly session: string;
  readonly source: string;
  readonly since: number;
  readonly agent: string;
  readonly connections: number;
  readonly withdrawn?: string;
  readonly meta?: RepoMeta | null;
}

/** A connector of a forward as another process learns it (what views show of it). */
export function endpointInfo(e: ForwardEndpoint): RemoteEndpoint {
  return {
    session: e.session.id,
    source: e.session.source,
    since: e.session.since,
    agent: e.session.agent,
    connections: e.connections,
    ...(e.withdrawn !== undefined ? { withdrawn: e.withdrawn } : {}),
    ...(e.meta !== undefined ? { meta: e.meta } : {}),
  };
}

/** A session carried by another process (a worker), as that process reports it. */
export type RemoteSession = Pick<
  LiveSession,
  'id' | 'tenant' | 'source' | 'since' | 'fingerprint' | 'agent'
> & {
  readonly node: string;
};

const key = (tenant: string, label: string) => `${tenant}\0${label}`;

/** A forward with no endpoint and no traffic yet. */
function newForward(tenant: string, label: string, port: number, meta: RepoMeta | null): LiveForward {
  return {
    tenant,
    label,
    port,
    meta,
    endpoints: [],
    connections: 0,
    totalConnections: 0,
    bytesIn: 0,
    bytesOut: 0,
    rr: 0,
  };
}

/**
 * Live state of one gateway: sessions, forwards and their connections. In memory; in a
 * cluster each member keeps its own and the store holds the directory.
 */
/**
 * How long a connection whose relay was refused waits for the forward to show up here or at
 * another member (a connector moving during a drain takes about one round trip per step).
 */
const HANDOVER_WAIT_MS = 2_000;

/** A refusal that answers the caller (a cap, a quota, an allowlist: 4xx), not a reason to look elsewhere. */
function callersAnswer(err: unknown): boolean {
  return isTetherError(err) && err.status >= 400 && err.status < 500;
}

export class ForwardRegistry extends EventEmitter {
  private readonly forwards = new Map<string, LiveForward>();
  private readonly byPortMap = new Map<number, LiveForward>();
  private readonly sessions = new Map<string, LiveSession>();
  private remote = new Map<string, RemoteForward[]>();
  private remotePorts = new Map<number, RemoteForward>();
  /** Ports of forwards another cluster member serves (not a sibling worker): relayed from here. */
  private memberPorts = new Set<number>();
  /** The remote views by where they come from (the cluster's directory, the primary's workers). */
  private readonly remoteSources = new Map<RemoteSource, RemoteForward[]>();
  private remoteSessions: RemoteSession[] = [];
  private remoteSignatures = { forwards: new Map<string, string>(), sessions: new Map<string, string>() };
  /** Opens a connection to another member's lease port (set by the cluster module). */
  remoteOpener?: (r: RemoteForward, origin: { address: string; port: number }) => Promise<Duplex>;
  /** Caps, quotas, bandwidth and byte accounting per tenant (set by the gateway). */
  limits?: TrafficLimits;
  /** Connections open or opening here, by tenant (remote ones are counted by their member). */
  private readonly tenantOpen = new Map<string, number>();
  private openTotal = 0;

  constructor(private readonly clock: Clock) {
    super();
    this.setMaxListeners(0);
  }

  addSession(s: LiveSession): void {
    this.sessions.set(s.id, s);
    this.emit('session', { type: 'opened', session: s });
  }

  removeSession(s: LiveSession): void {
    if (this.sessions.delete(s.id)) this.emit('session', { type: 'closed', session: s });
  }

  sessionsOf(tenant?: string): LiveSession[] {
    return [...this.sessions.values()].filter((s) => tenant === undefined || s.tenant === tenant);
  }

  /**
   * Ends a tenant's live sessions (removal, quota 0, key rotation, a narrowed tunnel_from): every
   * one with `reason`, or, when it is a function, those it gives a reason for (undefined keeps one).
   */
  endTenant(tenant: string, reason: string | ((s: LiveSession) => string | undefined)): number {
    let n = 0;
    for (const s of this.sessionsOf(tenant)) {
      const why = typeof reason === 'string' ? reason : reason(s);
      if (why === undefined) continue;
      s.end(why);
      n++;
    }
    return n;
  }

  get(tenant: string, label: string): LiveForward | undefined {
    return this.forwards.get(key(tenant, label));
  }

  byPort(port: number): LiveForward | undefined {
    return this.byPortMap.get(port);
  }

  list(tenant?: string): LiveForward[] {
    return [...this.forwards.values()]
      .filter((f) => tenant === undefined || f.tenant === tenant)
      .sort((a, b) => a.port - b.port);
  }

  /** Labels this tenant forwards right now, here or on other members (what the quota counts). */
  countLabels(tenant: string): number {
    const labels = new Set<string>();
    for (const f of this.forwards.values()) if (f.tenant === tenant) labels.add(f.label);
    for (const list of this.remote.values())
      for (const r of list) if (r.tenant === tenant) labels.add(r.label);
    return labels.size;
  }

  /**
   * Replaces the view of forwards served elsewhere that `source` knows (the cluster directory's
   * other members, or this gateway's other workers); returns the ports no other member serves
   * any more (`relaysPort` turned false: a listener kept for relaying may close).
   */
  setRemote(list: RemoteForward[], source: RemoteSource = 'cluster'): number[] {
    const before = this.memberPorts;
    this.remoteSources.set(source, list);
    this.remote = new Map();
    this.remotePorts = new Map();
    this.memberPorts = new Set();
    const all = [...this.remoteSources.values()].flat();
    for (const r of all) {
      const k = key(r.tenant, r.label);
      const arr = this.remote.get(k) ?? [];
      arr.push(r);
      this.remote.set(k, arr);
      this.remotePorts.set(r.port, r);
      if (!r.sibling) this.memberPorts.add(r.port);
    }
    this.emit('remote', { tenants: this.changedTenants('forwards', all) });
    return [...before].filter((p) => !this.memberPorts.has(p));
  }

  /** Whether another cluster member serves a forward on `port` (this process relays it there). */
  relaysPort(port: number): boolean {
    return this.memberPorts.has(port);
  }

  remoteOf(tenant: string, label: string): RemoteForward[] {
    return this.remote.get(key(tenant, label)) ?? [];
  }

  /**
   * A label of `tenant` served here or elsewhere (another cluster member or worker), matched
   * exactly or else case-insensitively (front doors take it from host names): the label as it
   * was registered, and the forward when it is served here.
   */
  findLabel(tenant: string, label: string): { label: string; live?: LiveForward } | undefined {
    const exact = this.get(tenant, label);
    if (exact) return { label, live: exact };
    if (this.remoteOf(tenant, label).length > 0) return { label };
    const lower = label.toLowerCase();
    const here = this.list(tenant).find((f) => f.label.toLowerCase() === lower);
    if (here) return { label: here.label, live: here };
    for (const list of this.remote.values()) {
      const r = list[0];
      if (r && r.tenant === tenant && r.label.toLowerCase() === lower) return { label: r.label };
    }
    return undefined;
  }

  /**
   * Something about a forward changed in place (a connector withdrew or restored it, or
   * described it anew): a `forward` event of type `changed`, for views that show it (the
   * dashboard, the primary under `workers`).
   */
  changed(f: LiveForward): void {
    this.emit('forward', { type: 'changed', forward: f });
  }

  /** Replaces the view of sessions other processes (workers) carry. */
  setRemoteSessions(list: RemoteSession[]): void {
    this.remoteSessions = list;
    const tenants = this.changedTenants('sessions', list);
    if (tenants.length > 0) this.emit('remote', { tenants });
  }

  /**
   * The tenants whose remote forwards (or sessions) differ from the last call's (the dashboard
   * sends those tenants' views again): one signature per tenant, compared.
   */
  private changedTenants(what: 'forwards' | 'sessions', list: ReadonlyArray<{ tenant: string }>): string[] {
    const now = new Map<string, string>();
    for (const x of list) now.set(x.tenant, `${now.get(x.tenant) ?? ''}${JSON.stringify(x)}`);
    const before = this.remoteSignatures[what];
    const changed = [...now.keys()].filter((t) => before.get(t) !== now.get(t));
    for (const t of before.keys()) if (!now.has(t)) changed.push(t);
    this.remoteSignatures[what] = now;
    return changed;
  }

  /** Sessions and open connections other processes (workers) report, of one tenant or of all. */
  remoteCounts(tenant?: string): { sessions: number; connections: number } {
    const mine = (x: { tenant: string }) => tenant === undefined || x.tenant === tenant;
    let connections = 0;
    for (const list of this.remote.values())
      for (const r of list) if (mine(r)) connections += r.connections ?? 0;
    return { sessions: this.remoteSessions.filter(mine).length, connections };
  }

  remoteSessionsOf(tenant: string): RemoteSession[] {
    return this.remoteSessions.filter((s) => s.tenant === tenant);
  }

  remoteByPort(port: number): RemoteForward | undefined {
    return this.remotePorts.get(port);
  }

  remoteList(): RemoteForward[] {
    return [...this.remote.values()].flat();
  }

  /** Adds an endpoint; returns true when it is the forward's first (its port must start listening). */
  add(
    tenant: string,
    label: string,
    port: number,
    endpoint: ForwardEndpoint,
    meta: RepoMeta | null,
  ): boolean {
    const k = key(tenant, label);
    let f = this.forwards.get(k);
    const first = f === undefined;
    if (!f) {
      f = newForward(tenant, label, port, meta);
      this.forwards.set(k, f);
      this.byPortMap.set(port, f);
    } else if (meta) {
      f.meta = meta;
    }
    if (meta) endpoint.meta = meta;
    if (!f.endpoints.includes(endpoint)) f.endpoints.push(endpoint);
    this.emit('forward', { type: first ? 'up' : 'endpoint-added', forward: f });
    return first;
  }

  /** Removes an endpoint; returns true when the forward has no endpoint left (its port must close). */
  remove(tenant: string, label: string, endpoint: ForwardEndpoint): boolean {
    const k = key(tenant, label);
    const f = this.forwards.get(k);
    if (!f) return false;
    const i = f.endpoints.indexOf(endpoint);
    if (i >= 0) f.endpoints.splice(i, 1);
    if (f.endpoints.length > 0) {
      this.emit('forward', { type: 'endpoint-removed', forward: f });
      return false;
    }
    this.forwards.delete(k);
    if (this.byPortMap.get(f.port) === f) this.byPortMap.delete(f.port);
    this.emit('forward', { type: 'down', forward: f });
    return true;
  }

  /** Connections open (or opening) on this member right now, of one tenant or of all. */
  openConnections(tenant?: string): number {
    return tenant === undefined ? this.openTotal : (this.tenantOpen.get(tenant) ?? 0);
  }

  /**
   * The endpoint for the next connection: round robin over the healthy ones (not withdrawn,
   * not in `exclude`), or the one with the fewest connections when the tenant's balance is
   * least-connections (ties in turn).
   */
  pick(f: LiveForward, exclude?: ReadonlySet<ForwardEndpoint>): ForwardEndpoint | undefined {
    const healthy = f.endpoints.filter((e) => !e.withdrawn && !exclude?.has(e));
    if (healthy.length === 0) return undefined;
    let pool = healthy;
    if (healthy.length > 1 && this.limits?.balance(f.tenant) === 'least-connections') {
      const least = Math.min(...healthy.map((e) => e.connections));
      pool = healthy.filter((e) => e.connections === least);
    }
    const e = pool[f.rr % pool.length]!;
    f.rr = (f.rr + 1) % 1_000_000;
    return e;
  }

  private hasHealthy(f: LiveForward): boolean {
    return f.endpoints.some((e) => !e.withdrawn);
  }

  /**
   * Opens a connection to whichever connector serves this forward. Every front door comes
   * through here: the tenant's connection caps and traffic quota are checked first (a
   * refusal says why), then a healthy connector is picked; when it does not accept, the next
   * one is tried. The stream is metered when the tenant has a bandwidth cap or a quota.
   */
  async open(
    tenant: string,
    label: string,
    origin: { address: string; port: number },
    opts: { again?: boolean; reach?: RelayReach } = {},
  ): Promise<OpenedConnection> {
    const again = opts.again ?? false;
    const reach = opts.reach ?? 'any';
    const within = (list: RemoteForward[]) =>
      reach === 'any' ? list : reach === 'siblings' ? list.filter((r) => r.sibling) : [];
    const f = this.get(tenant, label);
    const all = this.remoteOf(tenant, label);
    const remote = within(all);
    if ((!f || !this.hasHealthy(f)) && remote.length > 0 && this.remoteOpener) {
      // a spent quota is refused here, with its reason (the owner would only close the relay)
      this.limits?.checkQuotas(tenant, label);
      try {
        return await this.openRemote(tenant, label, remote, origin);
      } catch (err) {
        // The members refused before any byte of the caller was sent: during a handover the
        // forward is coming here or moving on. Wait for the change (briefly) and look once more.
        // A refusal that is the caller's answer (a cap, a quota: 4xx) stands.
        if (again || !this.remoteOpener || callersAnswer(err)) throw err;
        const changed = () => {
          const here = this.get(tenant, label);
          return (here !== undefined && this.hasHealthy(here)) || this.remoteOf(tenant, label) !== all;
        };
        if (!(await this.handedOver(changed))) throw err;
        return this.open(tenant, label, origin, { again: true, reach });
      }
    }
    if (!f)
      throw new TetherError('FORWARD_OFFLINE', `repository ${label} of ${tenant} is offline (no connector)`, {
        status: 503,
        retryable: true,
      });
    if (!this.hasHealthy(f)) throw withdrawn(tenant, label);
    const admission = this.limits?.admit(tenant, label, {
      tenant: this.tenantOpen.get(tenant) ?? 0,
      repository: f.connections,
    });
    // Reserve the slot before waiting, so concurrent opens cannot all pass a cap.
    f.connections++;
    this.tenantOpen.set(tenant, (this.tenantOpen.get(tenant) ?? 0) + 1);
    this.openTotal++;
    const release = () => {
      f.connections--;
      const n = (this.tenantOpen.get(tenant) ?? 1) - 1;
      if (n > 0) this.tenantOpen.set(tenant, n);
      else this.tenantOpen.delete(tenant);
      this.openTotal--;
    };
    const t0 = this.clock.now();
    const tried = new Set<ForwardEndpoint>();
    let lastErr: unknown;
    for (;;) {
      const e = this.pick(f, tried);
      if (!e) break;
      tried.add(e);
      e.connections++;
      try {
        const stream = await e.open(origin);
        return this.track(f, e, admission ? admission.wrap(stream) : stream, {
          origin,
          setupMs: this.clock.now() - t0,
          release,
          admission,
        });
      } catch (err) {
        e.connections--;
        lastErr = err;
      }
    }
    release();
    // Every connector here declined: its session may be moving to another member (a drain).
    // When the directory names another member for this forward now, relay the caller there.
    const movedTo = within(this.remoteOf(tenant, label));
    if (lastErr && movedTo.length > 0 && this.remoteOpener) {
      return this.openRemote(tenant, label, movedTo, origin);
    }
    // In a cluster, when the connectors that declined have left meanwhile (the session closed as
    // its forward moved on: the directory does not show where yet), wait for the forward to show
    // up and look once more. A connector that is still here and declined (its service is down)
    // is answered at once.
    const now = this.get(tenant, label);
    if (lastErr && !again && this.remoteOpener && ![...tried].some((e) => now?.endpoints.includes(e))) {
      const changed = () => {
        const here = this.get(tenant, label);
        return (
          within(this.remoteOf(tenant, label)).length > 0 || (here !== undefined && this.hasHealthy(here))
        );
      };
      if (await this.handedOver(changed)) return this.open(tenant, label, origin, { again: true, reach });
    }
    if (lastErr) {
      throw new TetherError(
        'FORWARD_OPEN_FAILED',
        `the connector for ${label} did not accept the connection`,
        {
          status: 502,
          retryable: true,
          cause: lastErr,
        },
      );
    }
    throw withdrawn(tenant, label);
  }

  /** During a handover: whether `changed()` holds, now or after the next change (waited for briefly). */
  private async handedOver(changed: () => boolean): Promise<boolean> {
    if (!changed()) await this.nextChange(HANDOVER_WAIT_MS);
    return changed();
  }

  /** Resolves on the next change of forwards (local or in the cluster directory), or after `ms`. */
  private nextChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.clock.clearTimeout(timer);
        this.off('forward', done);
        this.off('remote', done);
        resolve();
      };
      const timer = this.clock.setTimeout(done, ms);
      this.on('forward', done);
      this.on('remote', done);
    });
  }

  private async openRemote(
    tenant: string,
    label: string,
    remote: RemoteForward[],
    origin: { address: string; port: number },
  ): Promise<OpenedConnection> {
    // Try the members in random order: one may have died and not be reaped yet.
    const order = [...remote].sort(() => Math.random() - 0.5);
    let stream: Duplex | undefined;
    let r = order[0]!;
    let lastErr: unknown;
    for (const candidate of order) {
      try {
        stream = await this.remoteOpener!(candidate, origin);
        r = candidate;
        break;
      } catch (err) {
        // the owner's refusal that is the caller's answer: another owner would answer the same
        if (callersAnswer(err)) throw err;
        lastErr = err;
      }
    }
    if (!stream) {
      throw new TetherError(
        'FORWARD_OPEN_FAILED',
        `no cluster member that serves ${label} accepted the connection`,
        {
          status: 502,
          retryable: true,
          cause: lastErr,
        },
      );
    }
    const f = newForward(tenant, label, r.port, null);
    const endpoint: ForwardEndpoint = {
      session: {
        id: `remote:${r.node}`,
        tenant,
        source: r.address,
        since: 0,
        fingerprint: '',
        agent: 'cluster',
        end() {},
      },
      connections: 0,
      open: () => Promise.reject(new Error('remote')),
    };
    return this.track(f, endpoint, stream, { origin });
  }

  private track(
    f: LiveForward,
    e: ForwardEndpoint,
    stream: Duplex,
    info: {
      origin?: { address: string; port: number };
      setupMs?: number;
      /** Set for local connections: their slot was reserved (and counted) by open(). */
      release?: () => void;
      admission?: Admission;
    } = {},
  ): OpenedConnection {
    const { release, admission, ...event } = info;
    if (!release) {
      f.connections++;
      e.connections++;
    }
    f.totalConnections++;
    const startedAt = this.clock.now();
    this.emit('connection', { type: 'opened', forward: f, ...event });
    let closed = false;
    return {
      stream,
      forward: f,
      endpoint: e,
      ...(release
        ? { stillServed: () => !e.withdrawn && this.get(f.tenant, f.label)?.endpoints.includes(e) === true }
        : {}),
      close: (bytesIn: number, bytesOut: number) => {
        if (closed) return;
        closed = true;
        e.connections--;
        if (release) {
          release();
          // A metered stream has counted its bytes as they passed.
          if (!admission?.metered) this.limits?.account(f.tenant, f.label, bytesIn, bytesOut);
        } else f.connections--;
        f.bytesIn += bytesIn;
        f.bytesOut += bytesOut;
        this.emit('connection', {
          type: 'closed',
          forward: f,
          bytesIn,
          bytesOut,
          durationMs: this.clock.now() - startedAt,
        });
      },
    };
  }
}

function withdrawn(tenant: string, label: string): TetherError {
  return new TetherError(
    'FORWARD_WITHDRAWN',
    `repository ${label} of ${tenant} is unavailable (its connectors cannot reach it)`,
    { status: 503, retryable: true },
  );
}
