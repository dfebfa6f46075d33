import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Clock } from '../core/clock.js';
import type { ConnectionOutcome, ConnectionRecord } from '../core/connection-audit.js';
import type { ForwardRegistry, OpenedConnection } from '../core/forward-registry.js';
import type { RefusalLog } from '../core/refusals.js';
import { isTetherError, TetherError } from '../errors/index.js';
import { type Logger, withoutRedaction } from '../log/index.js';
import type { RepoMeta } from '../store/types.js';
import { readIntoPackets } from './packet-read.js';
import { coalesceWrites, relay } from './pipe.js';
import type { SourceAllowlists } from './source-allowlists.js';

/** The front doors a forwarded connection can come through (the `front_door` label and field). */
export type FrontDoorName = 'raw_port' | 'access_proxy' | 'http_proxy' | 'ssh_proxy';

/** The caller's address as the front door saw it (or as a cluster relay carried it). */
export interface Origin {
  address: string;
  port: number;
}

/** What a front door hands the broker: who may reach which forward, from where, through which door. */
export interface BrokerRequest {
  tenant: string;
  label: string;
  origin: Origin;
  frontDoor: FrontDoorName;
  /** Who the caller is, when the front door knows (an HTTP user, an SSH login); logged as `identity`. */
  identity?: string;
  /** The lease port the caller connected to (raw port), logged as `port`. */
  port?: number;
  /**
   * Relayed here by another cluster member or worker, which counts the connection in its metrics
   * and connection records: here it is logged (`relayed: true`) and its bytes count toward the
   * tenant's limits, but it is not counted a second time. It is relayed on no further than to a
   * worker of this member (from a member), or not at all (from a worker): see RelayReach.
   */
  relayed?: 'member' | 'worker';
}

/**
 * Where the broker reports what happened to each forwarded connection (implemented by the
 * gateway's metrics). Every forwarded connection is reported here exactly once as opened or
 * refused, and each opened one once as closed.
 */
export interface ConnectionMetricsSink {
  connectionOpened(e: { frontDoor: FrontDoorName; tenant: string; setupMs?: number }): void;
  connectionRefused(e: { frontDoor: FrontDoorName; tenant: string; reason: string }): void;
  connectionClosed(e: ClosedConnection): void;
}

/** What the metrics hear of a connection that ended. */
export type ClosedConnection = {
  frontDoor: FrontDoorName;
  tenant: string;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
};

export interface BrokerDeps {
  registry: Pick<ForwardRegistry, 'open'>;
  clock: Clock;
  log: Logger;
  metrics?: ConnectionMetricsSink;
  /** Receives one audit record per connection, when it ends or is refused. */
  records?: { record(r: ConnectionRecord): void };
  /** Source-address allowlists (`allow_from`): a caller outside them is refused before any channel opens. */
  allowlists?: Pick<SourceAllowlists, 'callerRefusal'>;
  /** Counts `allow_from` refusals (`bound.refused`, reason `allow_from`). */
  refusals?: RefusalLog;
}

function recordBase(req: BrokerRequest, source: string) {
  return {
    tenant: req.tenant,
    label: req.label,
    frontDoor: req.frontDoor,
    source,
    ...(req.identity !== undefined ? { identity: req.identity } : {}),
  };
}

/** One open forwarded connection, as a drain (or a narrowed allowlist) sees it. */
interface LiveConnection {
  readonly stream: Duplex;
  /** The session that carries it (undefined for one relayed to another cluster member). */
  readonly session: string | undefined;
  readonly tenant: string;
  readonly label: string;
  /** The caller's address (as the front door saw it, or as a relay carried it). */
  readonly address: string;
}

/** A channel the broker opened for a front door that speaks a protocol over it itself. */
export interface BrokeredConnection {
  readonly stream: Duplex;
  /** What the serving connector said about the repository. */
  readonly meta: RepoMeta | null;
  /** Whether its connector still serves the forward here (see OpenedConnection.stillServed). */
  stillServed(): boolean;
  /**
   * Ends the connection's accounting once (later calls do nothing): bytes toward the connector
   * (`bytesIn`) and back (`bytesOut`), the `connection.closed` record (with `fields` added and
   * `message` as its text, "connection closed" by default) and the metrics.
   */
  close(
    bytesIn: number,
    bytesOut: number,
    extra?: {
      fields?: Record<string, unknown>;
      message?: string;
      outcome?: ConnectionOutcome;
      reason?: string;
    },
  ): void;
}

/**
 * The one path of a forwarded connection, from accept to close: the forward registry picks a
 * healthy endpoint (balance, withdrawn) and applies the tenant's limits (connection caps,
 * bandwidth, traffic quota); the broker opens the channel, splices it to the caller with
 * backpressure and half-close, accounts the bytes, writes the lifecycle records
 * (`connection.opened`, `connection.refused`, `connection.closed`) and reports to the metrics
 * sink. Front doors only authorize and hand it a socket (`splice`) or ask for a stream (`open`).
 */
export class ConnectionBroker {
  /** Every connection open now (opened, not yet closed): what a drain waits for. */
  private readonly live = new Set<LiveConnection>();
  private readonly idleWaiters = new Set<() => void>();

  /**
   * Where the lifecycle records go: the broker builds their fields itself (tenant, label, port,
   * source, identity, front_door, bytes, duration, reason, and the front doors' route, method,
   * status, error), none of them a redacted path, so they skip pino's redaction pass.
   */
  private readonly lifecycle: Logger;

  constructor(private readonly deps: BrokerDeps) {
    this.lifecycle = withoutRedaction(deps.log);
  }

  /** Forwarded connections open now, in all or carried by one session (its id). */
  openCount(session?: string): number {
    if (session === undefined) return this.live.size;
    let n = 0;
    for (const c of this.live) if (c.session === session) n++;
    return n;
  }

  /**
   * The drain's wait: resolves true once no forwarded connection is open, or false when
   * `timeoutMs` passes first (those still open are left to the caller: see `cutAll`).
   */
  idle(timeoutMs: number): Promise<boolean> {
    if (this.live.size === 0) return Promise.resolve(true);
    const { clock } = this.deps;
    return new Promise((resolve) => {
      const done = () => {
        clock.clearTimeout(timer);
        this.idleWaiters.delete(done);
        resolve(true);
      };
      const timer = clock.setTimeout(
        () => {
          this.idleWaiters.delete(done);
          resolve(false);
        },
        Math.max(0, timeoutMs),
      );
      this.idleWaiters.add(done);
    });
  }

  /** Cuts every open forwarded connection (the drain ran out of time); returns how many. */
  cutAll(): number {
    const n = this.live.size;
    for (const c of [...this.live]) c.stream.destroy();
    return n;
  }

  /**
   * Cuts the tenant's open connections whose caller `refusal` no longer admits (its source
   * allowlists narrowed): each ends with the reason as its error (`connection.closed` and the
   * audit record say it). Returns how many.
   */
  cutRefused(tenant: string, refusal: (label: string, address: string) => string | undefined): number {
    let n = 0;
    for (const c of [...this.live]) {
      if (c.tenant !== tenant) continue;
      const why = refusal(c.label, c.address);
      if (why === undefined) continue;
      c.stream.destroy(new TetherError('SOURCE_NOT_ALLOWED', `${why} (the list changed)`, { status: 403 }));
      n++;
    }
    return n;
  }

  private untrack(c: LiveConnection): void {
    if (!this.live.delete(c) || this.live.size > 0) return;
    for (const w of [...this.idleWaiters]) w();
  }

  /** The fields every lifecycle record of this connection carries (`port` only when asked). */
  private fields(
    event: string,
    req: BrokerRequest,
    source: string,
    withPort: boolean,
  ): Record<string, unknown> {
    const f: Record<string, unknown> = { event };
    if (req.frontDoor !== 'raw_port') f.front_door = req.frontDoor;
    f.tenant = req.tenant;
    f.label = req.label;
    if (withPort && req.port !== undefined) f.port = req.port;
    f.source = source;
    if (req.identity !== undefined) f.identity = req.identity;
    if (req.relayed) f.relayed = true;
    return f;
  }

  /**
   * Opens a channel to the forward. A refusal (offline, withdrawn, a cap or the quota, the
   * connector declined) is logged as `connection.refused`, reported, and rethrown for the front
   * door to answer its caller.
   */
  async open(req: BrokerRequest): Promise<BrokeredConnection> {
    const { clock } = this.deps;
    // counted once, where the caller arrived (see BrokerRequest.relayed)
    const metrics = req.relayed ? undefined : this.deps.metrics;
    const records = req.relayed ? undefined : this.deps.records;
    const log = this.lifecycle;
    const t0 = clock.now();
    const source = `${req.origin.address}:${req.origin.port}`;
    let conn: OpenedConnection;
    try {
      const outside = this.deps.allowlists?.callerRefusal(req.tenant, req.label, req.origin.address);
      if (outside !== undefined) {
        this.deps.refusals?.refuse(
          'allow_from',
          `${req.tenant}\0${req.origin.address}`,
          { tenant: req.tenant, label: req.label, source: req.origin.address, front_door: req.frontDoor },
          `connection refused: ${outside}`,
        );
        throw new TetherError('SOURCE_NOT_ALLOWED', outside, { status: 403 });
      }
      conn = await this.deps.registry.open(req.tenant, req.label, req.origin, {
        reach: req.relayed === 'member' ? 'siblings' : req.relayed === 'worker' ? 'none' : 'any',
      });
    } catch (err) {
      const reason = isTetherError(err) ? err.message : String(err);
      const fields = this.fields('connection.refused', req, source, false);
      fields.reason = reason;
      log.info(fields, 'connection refused');
      metrics?.connectionRefused({ frontDoor: req.frontDoor, tenant: req.tenant, reason });
      const at = clock.now();
      records?.record({
        ...recordBase(req, source),
        bytesIn: 0,
        bytesOut: 0,
        openedAt: t0,
        endedAt: at,
        outcome: 'refused',
        reason,
      });
      throw err;
    }
    const started = clock.now();
    const opened = this.fields('connection.opened', req, source, true);
    log.info(opened, 'connection opened');
    metrics?.connectionOpened({ frontDoor: req.frontDoor, tenant: req.tenant, setupMs: started - t0 });
    let closed = false;
    const tracked: LiveConnection = {
      stream: conn.stream,
      session: conn.endpoint?.session?.id,
      tenant: req.tenant,
      label: req.label,
      address: req.origin.address,
    };
    this.live.add(tracked);
    return {
      stream: conn.stream,
      get meta() {
        return conn.forward?.meta ?? conn.endpoint?.meta ?? null;
      },
      stillServed: () => conn.stillServed?.() ?? true,
      close: (bytesIn, bytesOut, extra) => {
        if (closed) return;
        closed = true;
        this.untrack(tracked);
        conn.close(bytesIn, bytesOut);
        const durationMs = clock.now() - started;
        const rec = this.fields('connection.closed', req, source, true);
        if (extra?.fields) Object.assign(rec, extra.fields);
        rec.bytes_in = bytesIn;
        rec.bytes_out = bytesOut;
        rec.duration_ms = durationMs;
        log.info(rec, extra?.message ?? 'connection closed');
        metrics?.connectionClosed({
          frontDoor: req.frontDoor,
          tenant: req.tenant,
          bytesIn,
          bytesOut,
          durationMs,
        });
        const s = conn.endpoint?.session;
        records?.record({
          ...recordBase(req, source),
          ...(s ? { connector: `${s.source} (${s.agent}, session ${s.id})` } : {}),
          bytesIn,
          bytesOut,
          openedAt: started,
          endedAt: started + durationMs,
          outcome: extra?.outcome ?? 'closed',
          ...(extra?.reason !== undefined ? { reason: extra.reason } : {}),
        });
      },
    };
  }

  /**
   * Connects a caller's socket (paused by the front door) to the forward and splices the two
   * until both sides are done. `head` is caller data read before the splice (it goes first);
   * `accepted` runs once the channel is open, before any byte flows (e.g. a "200 Connection
   * established" line), and writes to the socket it is given: a plain TCP caller has moved to a
   * socket that reads into packets by then. A caller that went away meanwhile gets its channel
   * closed at once.
   * Resolves `{ refused }` with the refusal, already logged, when the forward cannot be opened
   * (the front door answers its caller); rejects only on a fault inside the gateway.
   */
  async splice(
    req: BrokerRequest,
    socket: Duplex,
    opts: { head?: Buffer; accepted?: (caller: Duplex) => void } = {},
  ): Promise<{ refused?: unknown }> {
    let conn: BrokeredConnection;
    try {
      conn = await this.open(req);
    } catch (refused) {
      return { refused };
    }
    if (socket.destroyed) {
      conn.stream.destroy();
      conn.close(0, 0);
      return {};
    }
    // a plain TCP caller reads straight into packets from here on (packet-read.ts); the socket it
    // moved to gathers its writes within a tick, as the front door's own socket did. It moves
    // before the accepted reply: a reply still queued (a corked write) would keep it where it is.
    const src = socket instanceof net.Socket ? readIntoPackets(socket) : socket;
    if (src !== socket) coalesceWrites(src as net.Socket);
    opts.accepted?.(src);
    const head = opts.head?.length ?? 0;
    if (head > 0) conn.stream.write(opts.head);
    relay(src, conn.stream, (r) =>
      conn.close(r.aToB + head, r.bToA, r.error ? { outcome: 'error', reason: r.error.message } : undefined),
    );
    src.resume();
    return {};
  }
}
