import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { RecentActivity } from '../../admin/activity.js';
import type { GatewayMetrics, WorkerMetrics } from '../../admin/metrics.js';
import type { StatsMessage } from '../../admin/traffic-stats.js';
import {
  dialRelay,
  RELAY_ACCEPTED,
  RELAY_VERSION,
  readRelayHeader,
  relayHeader,
  relayRefusal,
} from '../../cluster/relay-header.js';
import type { Clock } from '../../core/clock.js';
import type { Component } from '../../core/component.js';
import type { TenantEvents } from '../../core/events.js';
import { endpointInfo, type ForwardRegistry, type RemoteForward } from '../../core/forward-registry.js';
import type { LeaseService } from '../../core/leases.js';
import type { ThrottleShare } from '../../core/throttle.js';
import type { LeaseListeners } from '../../frontdoor/raw-port/index.js';
import type { Logger } from '../../log/index.js';
import type { Store } from '../../store/types.js';
import {
  isMessage,
  type PrimaryMessage,
  WORKER_HEARTBEAT_MS,
  type WorkerAnswers,
  type WorkerMessage,
  type WorkerQuestion,
  workerNode,
} from './protocol.js';

export interface WorkerMemberDeps {
  log: Logger;
  clock: Clock;
  store: Store;
  registry: ForwardRegistry;
  events: TenantEvents;
  leases: LeaseService;
  listeners: LeaseListeners;
  slot: number;
  relayKey: string;
  /**
   * In a cluster, this member's `node_id`: the worker is named under it in the directory, and
   * its cluster membership (src/cluster/) keeps its row and publishes its forwards instead.
   */
  member: string | null;
  /** The IPC channel to the primary (`process.send`). */
  send: (m: WorkerMessage) => void;
  /** Its login throttles: their failures go to the other workers, theirs come here. */
  throttles: ThrottleShare;
  /** This worker's figures, for the primary's `/metrics`. */
  metrics: () => Promise<WorkerMetrics>;
  /** Its traffic figures, for the primary's dashboard. */
  stats: (advance: boolean) => StatsMessage;
  /** Its event records, for the primary's dashboard. */
  activity: Pick<RecentActivity, 'items' | 'watch'>;
  /** Forwarded connections open here (the broker's count), for the primary's drain line. */
  openConnections: () => number;
  /** Its reconnect counting, which learns the other workers' session opens and closes. */
  sessions: Pick<GatewayMetrics, 'shareSessions' | 'sessionElsewhere'>;
  /** Messages from the primary (`process.on('message')`); returns the unsubscribe. */
  onMessage: (fn: (m: unknown) => void) => () => void;
}

/** How long a worker waits for another to take a relayed connection (its connector's channel). */
const RELAY_ACCEPT_MS = 20_000;
/** Reports of forwards and sessions to the primary: at most one per this many ms in a burst. */
const REPORT_EVERY_MS = 20;
/** How often (at most) a worker reports its forwards' connection counts to the primary. */
const CONNECTIONS_REPORT_MS = 100;
/** Connections to a worker's relay port waiting for their header at once (more are closed). */
const MAX_PENDING_RELAYS = 256;
/** How long a relayed connection may take to send its header. */
const RELAY_HEADER_WAIT_MS = 5_000;

/**
 * A worker's part in the multi-process gateway (`workers` > 1): keeps its row and its forwards
 * in the store's directory (the quota counts every worker's forwards, as it counts every cluster
 * member's), tells the primary its forwards, learns the other workers' from it, and relays a
 * front door's caller for a repository served by another worker to that worker's loopback relay
 * port, with a signed header naming the caller (the cluster's relay header, version 2).
 */
export class WorkerMember implements Component {
  readonly name = 'worker';
  private readonly nodeId: string;
  private readonly startedAt: string;
  private relayServer?: net.Server;
  private relayPort = 0;
  private readonly relayPorts = new Map<string, number>();
  private timer?: NodeJS.Timeout;
  private publishTimer?: NodeJS.Timeout;
  private countsTimer?: NodeJS.Timeout;
  private telling = false;
  private tellTimer?: NodeJS.Timeout;
  private pendingRelays = 0;
  private lastTold = 0;
  private unsubscribe: Array<() => void> = [];
  private stopped = false;
  /** Keeps its row and publishes its forwards itself (in a cluster, the cluster part does). */
  private readonly directory: boolean;

  constructor(private readonly deps: WorkerMemberDeps) {
    this.nodeId = workerNode(deps.slot, deps.member);
    this.directory = !deps.member;
    this.startedAt = new Date(deps.clock.now()).toISOString();
  }

  async start(): Promise<string> {
    const { registry, events, log } = this.deps;
    const server = net.createServer({ noDelay: true, allowHalfOpen: true, pauseOnConnect: true }, (s) =>
      this.onRelayed(s),
    );
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // exclusive: this port is this worker's own, not shared through the primary
      server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => log.error({ err }, 'worker relay listener failed'));
    this.relayServer = server;
    this.relayPort = (server.address() as net.AddressInfo).port;
    log.info(
      { event: 'worker.relay_listening', port: this.relayPort },
      `takes connections other workers relay on 127.0.0.1:${this.relayPort}`,
    );
    // in a cluster, the member's cluster part (started after this) keeps this for `sibling` forwards
    registry.remoteOpener = (r, origin) => this.relay(r, origin);
    this.deps.throttles.publish = (name, source) => this.deps.send({ t: 'tether:throttle', name, source });
    this.deps.sessions.shareSessions = (e) => this.deps.send({ t: 'tether:session', ...e });
    if (this.directory) await this.heartbeat();
    this.unsubscribe.push(
      this.deps.onMessage((m) => {
        if (isMessage<PrimaryMessage>(m)) this.onPrimary(m);
      }),
      events.on((c) => {
        if (c.origin !== 'remote') this.deps.send({ t: 'tether:event', change: c });
      }),
    );
    const onForward = () => {
      this.tellPrimarySoon();
      if (this.directory) this.schedulePublish();
    };
    // connection counts reach the primary's views at most every CONNECTIONS_REPORT_MS
    const onConnection = () => {
      if (this.countsTimer) return;
      this.countsTimer = setTimeout(() => {
        this.countsTimer = undefined;
        this.tellPrimarySoon();
      }, CONNECTIONS_REPORT_MS);
    };
    registry.on('forward', onForward);
    registry.on('session', onForward);
    registry.on('connection', onConnection);
    this.unsubscribe.push(() => {
      registry.off('forward', onForward);
      registry.off('session', onForward);
      registry.off('connection', onConnection);
    });
    if (this.directory) {
      this.timer = setInterval(() => {
        this.heartbeat().catch((err: unknown) => log.warn({ err }, 'worker heartbeat failed'));
        if (this.deps.leases.hasClaims()) this.schedulePublish();
      }, WORKER_HEARTBEAT_MS);
      this.timer.unref();
    }
    this.tellPrimary();
    return `worker ${this.deps.slot} (pid ${process.pid})`;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.publishTimer) clearTimeout(this.publishTimer);
    if (this.countsTimer) clearTimeout(this.countsTimer);
    if (this.tellTimer) clearTimeout(this.tellTimer);
    for (const u of this.unsubscribe) u();
    this.deps.activity.watch(undefined);
    this.deps.throttles.publish = undefined;
    this.deps.sessions.shareSessions = undefined;
    this.relayServer?.close();
    if (this.directory) await this.deps.store.setNodeForwards(this.nodeId, []).catch(() => {});
  }

  private onPrimary(m: PrimaryMessage): void {
    if (m.t === 'tether:event') {
      this.deps.events.emit({ ...m.change, origin: 'remote' });
    } else if (m.t === 'tether:throttle') {
      this.deps.throttles.apply(m.name, m.source);
    } else if (m.t === 'tether:session') {
      this.deps.sessions.sessionElsewhere(m);
    } else if (m.t === 'tether:watch') {
      this.deps.activity.watch(m.on ? (item) => this.deps.send({ t: 'tether:activity', item }) : undefined);
    } else if (m.t === 'tether:ask') {
      // a forward granted a moment ago reaches the primary before this answer (IPC keeps order)
      this.flushReport();
      this.answer(m.ask).then(
        (answer) => this.deps.send({ t: 'tether:answer', id: m.id, answer }),
        (err: unknown) =>
          this.deps.log.warn({ err, ask: m.ask.q }, `could not answer the primary (${m.ask.q})`),
      );
    } else if (m.t === 'tether:directory') {
      const remote: RemoteForward[] = [];
      this.relayPorts.clear();
      for (const w of m.workers) {
        if (w.slot === this.deps.slot) continue;
        const node = workerNode(w.slot, this.deps.member);
        this.relayPorts.set(node, w.relayPort);
        for (const f of w.forwards) remote.push({ ...f, node, address: '127.0.0.1', sibling: true });
      }
      this.deps.registry.setRemote(remote, 'workers');
    }
  }

  private async answer(ask: WorkerQuestion): Promise<WorkerAnswers[WorkerQuestion['q']]> {
    switch (ask.q) {
      case 'metrics':
        return this.deps.metrics();
      case 'stats':
        return this.deps.stats(ask.advance);
      case 'counts':
        return { connections: this.deps.openConnections(), sessions: this.deps.registry.sessionsOf().length };
      case 'activity':
        return this.deps.activity.items();
      case 'sync':
        return true;
    }
  }

  private async heartbeat(): Promise<void> {
    await this.deps.store.heartbeat({
      node_id: this.nodeId,
      advertise: '127.0.0.1',
      started_at: this.startedAt,
      heartbeat_at: new Date(this.deps.clock.now()).toISOString(),
      relay_version: RELAY_VERSION,
    });
  }

  /**
   * The primary learns a change of forwards in the same turn it happened, before the connector
   * hears its forward was granted: an admin request made after that already sees it. In a burst
   * (connectors coming back after a restart) at most one report per REPORT_EVERY_MS goes.
   */
  private tellPrimarySoon(): void {
    if (this.telling) return;
    this.telling = true;
    const wait = this.lastTold + REPORT_EVERY_MS - Date.now();
    if (wait <= 0) queueMicrotask(() => this.flushReport());
    else {
      this.tellTimer = setTimeout(() => this.flushReport(), wait);
      this.tellTimer.unref();
    }
  }

  /** Sends the report that waits, now (a scrape's figures must not be ahead of the views). */
  private flushReport(): void {
    if (!this.telling) return;
    if (this.tellTimer) clearTimeout(this.tellTimer);
    this.tellTimer = undefined;
    this.telling = false;
    this.lastTold = Date.now();
    this.tellPrimary();
  }

  private schedulePublish(): void {
    if (this.publishTimer || this.stopped) return;
    this.publishTimer = setTimeout(() => {
      this.publishTimer = undefined;
      this.publish().catch((err: unknown) => this.deps.log.warn({ err }, 'could not publish forwards'));
    }, 20);
  }

  private tellPrimary(): void {
    this.deps.send({
      t: 'tether:forwards',
      slot: this.deps.slot,
      relayPort: this.relayPort,
      forwards: this.deps.registry.list().map((f) => ({
        tenant: f.tenant,
        label: f.label,
        port: f.port,
        connectors: f.endpoints.length,
        connections: f.connections,
        endpoints: f.endpoints.map(endpointInfo),
      })),
      sessions: this.deps.registry.sessionsOf().map((x) => ({
        id: x.id,
        tenant: x.tenant,
        source: x.source,
        since: x.since,
        fingerprint: x.fingerprint,
        agent: x.agent,
      })),
    });
  }

  /** This worker's forwards and unregistered claims into the directory (as ClusterMember does). */
  private async publish(): Promise<void> {
    const now = new Date(this.deps.clock.now()).toISOString();
    await this.deps.store.publishNodeForwards(
      this.nodeId,
      this.deps.leases.directoryRows(this.nodeId, now),
      now,
    );
  }

  /**
   * A connection from another worker: its header names the lease port and the caller. Anyone on
   * the host can connect to the relay port; without the key nothing passes, and at most
   * MAX_PENDING_RELAYS connections wait for their header at once (more are closed).
   */
  private onRelayed(socket: net.Socket): void {
    socket.on('error', () => {});
    if (this.pendingRelays >= MAX_PENDING_RELAYS) {
      socket.destroy();
      return;
    }
    this.pendingRelays++;
    readRelayHeader(socket, this.deps.relayKey, undefined, () => this.deps.clock.now(), RELAY_HEADER_WAIT_MS)
      .finally(() => {
        this.pendingRelays--;
      })
      .then(
        (o) => {
          if (!o?.leasePort || socket.destroyed) {
            socket.destroy();
            return;
          }
          this.deps.listeners.acceptRelayed(o.leasePort, socket, {
            address: o.address,
            port: o.port,
            acceptedReply: RELAY_ACCEPTED,
            refusedReply: relayRefusal,
          });
        },
        (err: unknown) => {
          this.deps.log.warn(
            { event: 'worker.relay_refused', reason: (err as Error).message },
            `refused a connection relayed by another worker: ${(err as Error).message}`,
          );
          socket.destroy();
        },
      );
  }

  /**
   * Opens a caller's connection at the worker that serves `r`; resolves once it accepted. (In a
   * cluster, the member's cluster part relays to other members and passes siblings' here.)
   */
  private relay(r: RemoteForward, origin: { address: string; port: number }): Promise<Duplex> {
    const port = this.relayPorts.get(r.node);
    if (!port) return Promise.reject(new Error(`${r.node} is gone`));
    return dialRelay(
      { host: '127.0.0.1', port },
      relayHeader(this.deps.relayKey, origin, r.port, this.deps.clock.now(), 2),
      RELAY_ACCEPT_MS,
    );
  }
}
