import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Duplex } from 'node:stream';
import pg from 'pg';
import type { Component } from '../core/component.js';
import type { TenantChange } from '../core/events.js';
import type { RemoteForward } from '../core/forward-registry.js';
import type { ClusterConfig, ClusterDeps } from './deps.js';
import {
  dialRelay,
  RELAY_ACCEPTED,
  RELAY_VERSION,
  readRelayHeader,
  relayHeader,
  relayRefusal,
} from './relay-header.js';

export type { ClusterConfig, ClusterDeps } from './deps.js';

const TENANT_CHANNEL = 'tether_tenant';
const FORWARD_CHANNEL = 'tether_forward';

/**
 * Cluster membership: heartbeat in the store, publish this member's forwards to the shared
 * directory, listen on every member's lease ports and relay to the owner, and pass admin
 * changes to every member through LISTEN/NOTIFY.
 *
 * A member with `workers` > 1 runs one of these in each of its processes: each worker is a node
 * of the directory of its own (`gw1/worker-2`) that publishes its forwards, relays to other
 * members and takes their relayed callers; the primary only passes tenant changes and reads the
 * directory for its views. The member's own processes learn each other's forwards and changes
 * from the primary (src/gateway/workers/), so their rows and notifications are skipped here.
 */
export class ClusterMember implements Component {
  readonly name = 'cluster';
  private timer?: NodeJS.Timeout;
  private listener?: pg.Client;
  private stopped = false;
  private syncing?: Promise<void>;
  private resync = false;
  private publishTimer?: NodeJS.Timeout;
  private unsubscribe?: () => void;
  private readonly startedAt: string;
  /** This process's node in the directory: the member's `node_id`, or one of its workers'. */
  private readonly nodeId: string;
  /** Whether this process serves forwards and relays (every process but a primary of workers). */
  private readonly relays: boolean;
  /** Signs relay headers (the caller's address on a relayed connection); shared through the store. */
  private relayKey = '';
  /** Addresses of every other member seen: connections from them may carry a relay header. */
  private memberAddresses = new Set<string>();
  /** Which relay header each member reads: 1 for a member of an earlier release (no answer). */
  private readonly relayVersions = new Map<string, 1 | 2>();
  /** Lease ports of other members this one could not bind for relaying (warned once each). */
  private readonly unbindable = new Set<number>();

  constructor(
    private readonly config: ClusterConfig,
    private readonly ctx: ClusterDeps,
  ) {
    this.startedAt = new Date(ctx.clock.now()).toISOString();
    const p = ctx.process;
    this.nodeId = p?.kind === 'worker' ? p.node : this.cfg.node_id;
    this.relays = p?.kind !== 'primary';
  }

  /** Whether `node` is this member or one of its workers (`<node_id>/…`). */
  private ofThisMember(node: string): boolean {
    const id = this.cfg.node_id;
    return node === id || node.startsWith(`${id}/`);
  }

  private get cfg() {
    return this.config.cluster!;
  }

  async start(): Promise<string> {
    const { registry, events, log } = this.ctx;
    this.relayKey = await this.ctx.store.initSetting(
      'cluster_relay_key',
      randomBytes(32).toString('base64url'),
    );
    if (this.relays) this.takeRelays();
    await this.heartbeat();
    // Know the members before this member's forwards are published: they relay to it at once.
    // (A primary of workers publishes none: rows a single-process run of this member left go.)
    this.learnMembers(await this.ctx.store.listNodes());
    await this.publish();
    await this.listen();
    // The others learn this member's address now (they take relay headers only from members).
    this.notify(FORWARD_CHANNEL, this.nodeId);
    // Each of them syncs after its next heartbeat at the latest: relay to them only after that,
    // or the first relayed callers reach a member that does not know this one yet.
    await new Promise((r) => setTimeout(r, this.cfg.heartbeat + JOIN_MARGIN_MS));
    if (this.relays) registry.on('forward', () => this.schedulePublish());
    this.unsubscribe = events.on((c) => {
      if (c.origin === 'remote') return;
      this.notify(TENANT_CHANNEL, JSON.stringify(c));
    });
    await this.sync();
    this.timer = setInterval(() => {
      // A claim whose forward never came (its port could not open) leaves the directory.
      if (this.relays && this.ctx.leases.hasClaims()) this.schedulePublish();
      this.heartbeat()
        .then(() => this.sync())
        .catch((err: unknown) => log.warn({ err }, 'cluster heartbeat failed'));
    }, this.cfg.heartbeat);
    this.timer.unref();
    log.info(
      { event: 'cluster.joined', node: this.nodeId, advertise: this.cfg.advertise },
      `joined the cluster as ${this.nodeId}`,
    );
    return `${this.nodeId} (${this.cfg.advertise})`;
  }

  /**
   * Callers for other members' forwards are relayed from here, and connections other members
   * relay are taken. In a worker, a forward another worker of this member serves (`sibling`)
   * stays with the worker relay that was set before.
   */
  private takeRelays(): void {
    const { registry } = this.ctx;
    const siblings = registry.remoteOpener;
    registry.remoteOpener = (r, origin) =>
      r.sibling && siblings ? siblings(r, origin) : this.relay(r, origin);
    this.ctx.leasePorts.relayOrigin = (socket, port) => {
      if (!this.memberAddresses.has(normalizeIp(socket.remoteAddress ?? ''))) return undefined;
      return readRelayHeader(
        socket,
        this.relayKey,
        port,
        () => this.ctx.clock.now(),
        RELAY_HEADER_WAIT_MS,
      ).then(
        (o) =>
          o && {
            address: o.address,
            port: o.port,
            ...(o.acknowledge ? { acceptedReply: RELAY_ACCEPTED, refusedReply: relayRefusal } : {}),
          },
      );
    };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.publishTimer) clearTimeout(this.publishTimer);
    this.unsubscribe?.();
    // Leave the directory so other members stop relaying here at once.
    await this.ctx.store.setNodeForwards(this.nodeId, []).catch(() => {});
    this.notify(FORWARD_CHANNEL, this.nodeId);
    await this.listener?.end().catch(() => {});
  }

  private async heartbeat(): Promise<void> {
    const now = new Date(this.ctx.clock.now()).toISOString();
    await this.ctx.store.heartbeat({
      node_id: this.nodeId,
      advertise: this.cfg.advertise,
      started_at: this.startedAt,
      heartbeat_at: now,
      relay_version: RELAY_VERSION,
    });
    const dead = await this.ctx.store.reapNodes(
      new Date(this.ctx.clock.now() - this.cfg.dead_after).toISOString(),
    );
    if (dead.length > 0)
      this.ctx.log.warn(
        { event: 'cluster.members_expired', nodes: dead },
        `cluster members expired: ${dead.join(', ')}`,
      );
  }

  private schedulePublish(): void {
    if (this.publishTimer || this.stopped) return;
    this.publishTimer = setTimeout(() => {
      this.publishTimer = undefined;
      this.publish()
        .then(() => this.notify(FORWARD_CHANNEL, this.nodeId))
        .catch((err: unknown) => this.ctx.log.warn({ err }, 'could not publish forwards'));
    }, 20);
  }

  /**
   * Writes this member's live forwards into the directory, with the forwards it granted but has
   * not registered yet (claims). Rows of this member older than the snapshot and no longer live
   * go; a claim another request wrote meanwhile is newer than the snapshot and stays.
   */
  private async publish(): Promise<void> {
    const now = new Date(this.ctx.clock.now()).toISOString();
    await this.ctx.store.publishNodeForwards(
      this.nodeId,
      this.ctx.leases.directoryRows(this.nodeId, now),
      now,
    );
  }

  /**
   * Remembers the other members' addresses: connections from them may start with a relay header.
   * Addresses stay known after a member is reaped (a member slowed past `dead_after`, or
   * restarting, still relays its callers here and must not see its header passed on to the
   * service as data); the header's signature, not the address, is what is trusted.
   */
  private learnMembers(
    nodes: ReadonlyArray<{ node_id: string; advertise: string; relay_version: number | null }>,
  ): void {
    for (const n of nodes) {
      if (this.relayVersions.size < MAX_MEMBER_ADDRESSES || this.relayVersions.has(n.node_id))
        this.relayVersions.set(n.node_id, n.relay_version === null ? 1 : 2);
      if (this.ofThisMember(n.node_id) || this.memberAddresses.size >= MAX_MEMBER_ADDRESSES) continue;
      this.memberAddresses.add(normalizeIp(n.advertise));
    }
  }

  /** Reads the directory: forwards of other live members get a local listener that relays to them. */
  private sync(): Promise<void> {
    if (this.syncing) {
      this.resync = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      do {
        this.resync = false;
        await this.syncOnce();
      } while (this.resync && !this.stopped);
    })().finally(() => {
      this.syncing = undefined;
    });
    return this.syncing;
  }

  private async syncOnce(): Promise<void> {
    const { store, registry, leasePorts, log } = this.ctx;
    const nodes = await store.listNodes();
    const liveAfter = this.ctx.clock.now() - this.cfg.dead_after;
    const address = new Map(
      nodes.filter((n) => Date.parse(n.heartbeat_at) >= liveAfter).map((n) => [n.node_id, n.advertise]),
    );
    const remote: RemoteForward[] = [];
    for (const row of await store.listDirectory()) {
      // this member's own workers' forwards come from its primary (they are `sibling` there)
      if (this.ofThisMember(row.node_id)) continue;
      const addr = address.get(row.node_id);
      if (!addr) continue;
      remote.push({
        tenant: row.tenant_id,
        label: row.label,
        port: row.port,
        node: row.node_id,
        address: addr,
        connectors: row.connectors,
      });
    }
    this.learnMembers(nodes);
    const unrelayed = registry.setRemote(remote, 'cluster');
    // a primary of workers only shows them; its workers listen and relay
    if (!this.relays) return;
    // closed unless a forward here still uses them (another worker's forward does not keep them)
    for (const port of unrelayed) leasePorts.close(port);
    for (const r of remote) {
      if (leasePorts.isOpen(r.port)) continue;
      await leasePorts.open(r.port).then(
        () => this.unbindable.delete(r.port),
        (err: unknown) => {
          // once per port until it opens (a draining member fails every sync: not news)
          if (this.unbindable.has(r.port) || this.unbindable.size >= MAX_MEMBER_ADDRESSES) return;
          this.unbindable.add(r.port);
          log.warn({ err: (err as Error).message, port: r.port }, 'cannot relay lease port');
        },
      );
    }
  }

  /**
   * Connects to the owner's lease port and names the caller first (a signed relay header). The
   * connection leaves from this member's advertised address when it is one of this host's, so
   * the owner knows it for a member's.
   */
  private relay(r: RemoteForward, origin: { address: string; port: number }): Promise<Duplex> {
    const own = this.cfg.advertise;
    const version = this.relayVersions.get(r.node) ?? 1;
    // The owner acknowledges once its connector took the channel; a refusal (the forward left it
    // a moment ago) rejects, before any byte of the caller was sent, with the caller's answer when
    // the owner gave one (a cap, a quota). (An owner of an earlier release reads version 1 and
    // does not answer.)
    return dialRelay(
      {
        host: r.address,
        port: r.port,
        ...(net.isIP(own) && isLocalAddress(own) ? { localAddress: own } : {}),
      },
      relayHeader(this.relayKey, origin, r.port, this.ctx.clock.now(), version),
      version === 2 ? RELAY_ACCEPT_MS : undefined,
    );
  }

  private async listen(): Promise<void> {
    const { log, events } = this.ctx;
    const client = new pg.Client({ connectionString: this.config.store });
    client.on('error', (err) => {
      log.warn({ err: err.message }, 'cluster notification connection lost; reconnecting');
      if (this.listener === client) this.listener = undefined;
      if (!this.stopped) setTimeout(() => this.listen().catch(() => {}), 1_000).unref();
    });
    client.on('notification', (n) => {
      if (n.channel === TENANT_CHANNEL && n.payload) {
        try {
          const c = JSON.parse(n.payload) as TenantChange & { from?: string };
          // this member's own processes pass their changes to each other (src/gateway/workers/)
          if (c.from !== undefined && this.ofThisMember(c.from)) return;
          events.emit({ ...c, origin: 'remote' });
        } catch {
          log.warn('bad cluster notification');
        }
      } else if (n.channel === FORWARD_CHANNEL && n.payload !== this.nodeId) {
        this.sync().catch((err: unknown) => log.warn({ err }, 'cluster sync failed'));
      }
    });
    await client.connect();
    await client.query(`LISTEN ${TENANT_CHANNEL}`);
    await client.query(`LISTEN ${FORWARD_CHANNEL}`);
    this.listener = client;
  }

  private notify(channel: string, payload: string): void {
    const body =
      channel === TENANT_CHANNEL ? JSON.stringify({ ...JSON.parse(payload), from: this.nodeId }) : payload;
    const c = this.listener;
    if (!c) return;
    void c
      .query('SELECT pg_notify($1, $2)', [channel, body])
      .catch((err: unknown) => this.ctx.log.warn({ err }, 'cluster notify failed'));
  }
}

/** Most member addresses remembered (a bound against a directory filled with junk rows). */
const MAX_MEMBER_ADDRESSES = 1024;
/** Slack over one heartbeat before a joining member relays (the others' sync takes a query). */
const JOIN_MARGIN_MS = 250;

/** How long a relaying member waits for the owner to accept (its connector opens the channel). */
const RELAY_ACCEPT_MS = 20_000;

/** How long the owner waits for the relay header of a connection from a member's address. */
const RELAY_HEADER_WAIT_MS = 5_000;

/** "::ffff:10.0.0.5" → "10.0.0.5" (a dual-stack listener reports IPv4 callers so). */
function normalizeIp(a: string): string {
  return a.startsWith('::ffff:') && net.isIPv4(a.slice(7)) ? a.slice(7) : a;
}

/** Whether an address is one of this host's (a loopback address always is on Linux). */
function isLocalAddress(a: string): boolean {
  if (a.startsWith('127.') || a === '::1') return true;
  return Object.values(networkInterfaces()).some((list) => list?.some((i) => i.address === a));
}

export function clusterComponent(config: ClusterConfig, deps: ClusterDeps): Component | undefined {
  if (!config.cluster) return undefined;
  return new ClusterMember(config, deps);
}
