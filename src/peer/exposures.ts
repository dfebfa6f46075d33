import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ClientChannel, TcpConnectionDetails } from 'ssh2';
import { formatHostPort, type HostPort } from '../config/host-port.js';
import type { Clock } from '../core/clock.js';
import { TetherError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import { type BackoffPolicy, backoffDelay, DEFAULT_BACKOFF } from '../tunnel/backoff.js';
import { dialDestination } from '../tunnel/dial.js';
import { relay } from '../tunnel/pipe.js';
import type { TlsMaterial } from '../tunnel/tls-material.js';
import type { ExposeSpec } from './expose-request.js';
import { OpenConnections } from './open-connections.js';
import { RemoteLink } from './remote-link.js';

export type ExposureStatus = 'PENDING' | 'COMPLETE' | 'ERROR';

/** One exposure as GET /list shows it (field names as in the API this mode re-implements). */
export interface ExposureView {
  id: string;
  name: string;
  source_port: number;
  source_addr: string;
  remote_connector_addr: string;
  destination_addr: string;
  type: 'LOCAL' | 'REMOTE';
  status: ExposureStatus;
  /** Why the exposure is not COMPLETE (always set with ERROR). */
  reason?: string;
}

export interface ExposureManagerDeps {
  logger: Logger;
  clock: Clock;
  random: () => number;
  tls?: TlsMaterial;
  backoff?: BackoffPolicy;
  /** How long POST /expose waits for the first outcome before answering PENDING. */
  settleTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** MAX_EXPOSURES unless given (tests make it small). */
  maxExposures?: number;
}

type ForwardState =
  | { kind: 'idle' }
  | { kind: 'requesting' }
  | { kind: 'ok' }
  | { kind: 'failed'; reason: string; retryTimer?: unknown };

interface Exposure {
  readonly id: string;
  readonly spec: ExposeSpec;
  readonly linkKey: string;
  readonly log: Logger;
  /** Streams this exposure carries, torn down when it is deleted. */
  readonly streams: Set<Duplex>;
  /** "local" only: the remote peer's listener. */
  forward: ForwardState;
  forwardFailures: number;
  /** "remote" only: our listener. */
  server?: NetServer;
  removed: boolean;
}

interface LinkEntry {
  readonly link: RemoteLink;
  readonly exposures: Set<Exposure>;
}

const DIAL_TIMEOUT_MS = 10_000;

const stopping = () =>
  new TetherError('PEER_STOPPING', 'the peer is stopping: it takes no new exposures', { status: 503 });

/** The most exposures one peer keeps: each holds a listener here or on a remote peer. */
export const MAX_EXPOSURES = 256;

function bindError(spec: ExposeSpec, e: NodeJS.ErrnoException): TetherError {
  const port = spec.sourcePort;
  const bad = (path: string, message: string) =>
    new TetherError('BAD_REQUEST', `invalid request: ${path}: ${message}`, {
      status: 400,
      details: [{ path, message }],
      cause: e,
    });
  switch (e.code) {
    case 'EADDRINUSE':
      return bad('source_port', `port ${port} is already in use on this machine`);
    case 'EACCES':
      return bad('source_port', `not permitted to listen on port ${port} (ports below 1024 need privileges)`);
    case 'EADDRNOTAVAIL':
      return bad('source_addr', `"${spec.sourceAddr}" is not an address of this machine`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return bad('source_addr', `"${spec.sourceAddr}" does not resolve`);
    default:
      return bad(
        'source_port',
        `cannot listen on ${formatHostPort({ host: spec.sourceAddr, port })}: ${e.message}`,
      );
  }
}

function listen(spec: ExposeSpec, onConnection: (s: Socket) => void): Promise<NetServer> {
  return new Promise((resolve, reject) => {
    const server = createServer(onConnection);
    server.once('error', (e) => reject(bindError(spec, e)));
    server.listen({ host: spec.sourceAddr, port: spec.sourcePort }, () => {
      server.removeAllListeners('error');
      resolve(server);
    });
  });
}

/**
 * The exposures this peer was asked for, and one kept-up link per remote peer they use.
 * "local": the remote peer listens and carries connections back; we dial the destination.
 * "remote": we listen and carry connections to the remote peer, which dials the destination.
 */
export class ExposureManager {
  private readonly exposures = new Map<string, Exposure>();
  private readonly links = new Map<string, LinkEntry>();
  private readonly changes = new EventEmitter();
  private readonly log: Logger;
  private readonly backoff: BackoffPolicy;
  private closed = false;
  private draining = false;
  /** Exposures being created (their listener opening): they count against MAX_EXPOSURES. */
  private pending = 0;
  /** The connections the exposures carry (what a draining stop waits for). */
  readonly open = new OpenConnections();

  constructor(private readonly deps: ExposureManagerDeps) {
    this.log = deps.logger.child({ component: 'expose' });
    this.backoff = deps.backoff ?? DEFAULT_BACKOFF;
    this.changes.setMaxListeners(0);
  }

  /** Creates an exposure; throws a 400 TetherError for a port that cannot be used. */
  async expose(spec: ExposeSpec): Promise<string> {
    if (this.draining || this.closed) throw stopping();
    const linkKey = formatHostPort(spec.remoteConnectorAddr);
    const max = this.deps.maxExposures ?? MAX_EXPOSURES;
    if (this.exposures.size + this.pending >= max) {
      throw new TetherError(
        'PEER_EXPOSURE_LIMIT',
        `this peer already has ${max} exposures, the most it keeps: delete one first (DELETE /expose/{id})`,
        { status: 429 },
      );
    }
    this.checkConflicts(spec, linkKey);
    const id = randomUUID();
    const e: Exposure = {
      id,
      spec,
      linkKey,
      log: this.log.child({ expose: id, name: spec.name }),
      streams: new Set(),
      forward: { kind: 'idle' },
      forwardFailures: 0,
      removed: false,
    };
    if (spec.type === 'remote') {
      this.pending++;
      try {
        e.server = await listen(spec, (s) => this.onLocalConnection(e, s));
      } finally {
        this.pending--;
      }
      // a drain (or a stop) that began while the listener opened has closed the others already
      if (this.draining || this.closed) {
        e.server.close();
        throw stopping();
      }
    }
    this.exposures.set(id, e);
    const entry = this.linkFor(spec.remoteConnectorAddr, linkKey);
    entry.exposures.add(e);
    e.log.info(
      {
        type: spec.type,
        source: formatHostPort({ host: spec.sourceAddr, port: spec.sourcePort }),
        remote: linkKey,
        destination: formatHostPort(spec.destinationAddr),
      },
      'exposure created',
    );
    if (entry.link.state.kind === 'up') {
      if (spec.type === 'local') this.requestForward(e, entry.link);
    } else {
      entry.link.kick();
    }
    await this.settle(e);
    if (spec.type === 'local' && e.forward.kind === 'failed' && e.forwardFailures === 1) {
      // The remote peer is there and said no on the first try: the port is taken (or not
      // allowed) over there. That is bad input, not a transient state.
      const reason = e.forward.reason;
      this.discard(e);
      throw new TetherError('BAD_REQUEST', `invalid request: source_port: ${reason}`, {
        status: 400,
        details: [{ path: 'source_port', message: reason }],
      });
    }
    return id;
  }

  /** Deletes an exposure and everything it carries; 404 when the id is unknown. */
  async remove(id: string): Promise<void> {
    const e = this.exposures.get(id);
    if (!e) throw new TetherError('NOT_FOUND', `exposure "${id}" not found`, { status: 404 });
    const link = this.links.get(e.linkKey)?.link;
    const wasForwarded = e.spec.type === 'local' && e.forward.kind === 'ok';
    this.discard(e);
    if (wasForwarded && link && link.state.kind === 'up') await this.unforward(e, link);
    this.dropLinkIfUnused(e.linkKey);
    e.log.info('exposure deleted');
  }

  list(): ExposureView[] {
    return [...this.exposures.values()].map((e) => this.view(e));
  }

  get(id: string): ExposureView | undefined {
    const e = this.exposures.get(id);
    return e ? this.view(e) : undefined;
  }

  /**
   * The first step of a draining stop: no new connections (our listeners close, the remote
   * peers stop listening for our "local" exposures, carried-back connections are refused),
   * while the open ones go on over the links, which stay up until close().
   */
  async drain(): Promise<void> {
    if (this.draining || this.closed) return;
    this.draining = true;
    const cancels: Promise<void>[] = [];
    for (const e of this.exposures.values()) {
      e.server?.close();
      const link = this.links.get(e.linkKey)?.link;
      if (e.spec.type === 'local' && e.forward.kind === 'ok' && link?.state.kind === 'up') {
        cancels.push(this.unforward(e, link));
      }
      this.resetForward(e);
    }
    await Promise.all(cancels);
  }

  /** Asks the remote peer to stop listening for a "local" exposure; waits for its answer 2 s at most. */
  private unforward(e: Exposure, link: RemoteLink): Promise<void> {
    return Promise.race([
      link.unforwardIn(e.spec.sourceAddr, e.spec.sourcePort),
      new Promise<void>((r) => this.deps.clock.setTimeout(r, 2_000)),
    ]);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const e of [...this.exposures.values()]) this.discard(e);
    for (const { link } of this.links.values()) link.close();
    this.links.clear();
  }

  private view(e: Exposure): ExposureView {
    const { spec } = e;
    const { status, reason } = this.status(e);
    return {
      id: e.id,
      name: spec.name,
      source_port: spec.sourcePort,
      source_addr: spec.sourceAddr,
      remote_connector_addr: e.linkKey,
      destination_addr: formatHostPort(spec.destinationAddr),
      type: spec.type === 'local' ? 'LOCAL' : 'REMOTE',
      status,
      ...(reason ? { reason } : {}),
    };
  }

  private status(e: Exposure): { status: ExposureStatus; reason?: string } {
    const link = this.links.get(e.linkKey)?.link;
    const s = link?.state ?? { kind: 'closed' as const };
    switch (s.kind) {
      case 'connecting':
        return { status: 'PENDING', reason: s.reason };
      case 'failed': {
        const secs = Math.max(0, Math.ceil((s.retryAt - this.deps.clock.now()) / 1000));
        return { status: 'ERROR', reason: `${s.reason} (attempt ${s.attempts}, next retry in ${secs} s)` };
      }
      case 'closed':
        return { status: 'ERROR', reason: 'stopped' };
      case 'up':
        break;
    }
    if (e.spec.type === 'remote') return { status: 'COMPLETE' };
    switch (e.forward.kind) {
      case 'ok':
        return { status: 'COMPLETE' };
      case 'failed':
        return { status: 'ERROR', reason: e.forward.reason };
      default:
        return { status: 'PENDING', reason: `asking the remote peer at ${e.linkKey} to listen` };
    }
  }

  private checkConflicts(spec: ExposeSpec, linkKey: string): void {
    for (const other of this.exposures.values()) {
      if (other.spec.type !== spec.type || other.spec.sourcePort !== spec.sourcePort) continue;
      if (spec.type === 'local' && other.linkKey !== linkKey) continue;
      const where = spec.type === 'local' ? `on the remote peer at ${linkKey}` : 'on this machine';
      const message = `port ${spec.sourcePort} is already exposed ${where} (exposure ${other.id})`;
      throw new TetherError('BAD_REQUEST', `invalid request: source_port: ${message}`, {
        status: 400,
        details: [{ path: 'source_port', message }],
      });
    }
  }

  private linkFor(addr: HostPort, key: string): LinkEntry {
    const existing = this.links.get(key);
    if (existing) return existing;
    const exposures = new Set<Exposure>();
    const link: RemoteLink = new RemoteLink(
      addr,
      {
        logger: this.deps.logger,
        clock: this.deps.clock,
        random: this.deps.random,
        tls: this.deps.tls,
        backoff: this.backoff,
        connectTimeoutMs: this.deps.connectTimeoutMs,
      },
      {
        up: () => {
          for (const e of exposures) if (e.spec.type === 'local') this.requestForward(e, link);
        },
        changed: () => {
          if (link.state.kind !== 'up') for (const e of exposures) this.resetForward(e);
          this.changes.emit('change');
        },
        incoming: (info, accept, reject) => this.onCarriedBack(exposures, info, accept, reject),
      },
    );
    const entry = { link, exposures };
    this.links.set(key, entry);
    link.start();
    return entry;
  }

  private dropLinkIfUnused(key: string): void {
    const entry = this.links.get(key);
    if (entry && entry.exposures.size === 0) {
      entry.link.close();
      this.links.delete(key);
    }
  }

  private discard(e: Exposure): void {
    e.removed = true;
    this.resetForward(e);
    e.server?.close();
    for (const s of e.streams) s.destroy();
    e.streams.clear();
    this.exposures.delete(e.id);
    this.links.get(e.linkKey)?.exposures.delete(e);
    if (!this.closed) this.dropLinkIfUnused(e.linkKey);
    this.changes.emit('change');
  }

  private resetForward(e: Exposure): void {
    if (e.forward.kind === 'failed' && e.forward.retryTimer !== undefined) {
      this.deps.clock.clearTimeout(e.forward.retryTimer);
    }
    if (e.forward.kind !== 'idle') e.forward = { kind: 'idle' };
  }

  /** Resolves once the exposure has a first outcome, or after settleTimeoutMs. */
  private settle(e: Exposure): Promise<void> {
    const done = () => {
      const link = this.links.get(e.linkKey)?.link;
      if (e.removed || !link) return true;
      if (link.state.kind === 'connecting') return false;
      if (link.state.kind !== 'up' || e.spec.type === 'remote') return true;
      return e.forward.kind === 'ok' || e.forward.kind === 'failed';
    };
    if (done()) return Promise.resolve();
    return new Promise((resolve) => {
      const finish = () => {
        this.changes.off('change', check);
        this.deps.clock.clearTimeout(timer);
        resolve();
      };
      const check = () => {
        if (done()) finish();
      };
      const timer = this.deps.clock.setTimeout(finish, this.deps.settleTimeoutMs ?? 5_000);
      this.changes.on('change', check);
    });
  }

  private requestForward(e: Exposure, link: RemoteLink): void {
    if (e.removed || this.draining || e.spec.type !== 'local') return;
    const generation = link.generation;
    const { sourceAddr, sourcePort } = e.spec;
    e.forward = { kind: 'requesting' };
    link.forwardIn(sourceAddr, sourcePort).then(
      () => {
        if (link.generation !== generation || link.state.kind !== 'up') return;
        if (e.removed) {
          void link.unforwardIn(sourceAddr, sourcePort);
          return;
        }
        e.forward = { kind: 'ok' };
        e.forwardFailures = 0;
        e.log.info('exposure up: the remote peer listens');
        this.changes.emit('change');
      },
      () => {
        if (e.removed || link.generation !== generation || link.state.kind !== 'up') return;
        e.forwardFailures++;
        const reason =
          `port ${sourcePort} cannot be opened on the remote peer at ${e.linkKey}: listening on ` +
          `${formatHostPort({ host: sourceAddr, port: sourcePort })} failed there (already in use, or not permitted; its log says which)`;
        const delay = backoffDelay(e.forwardFailures - 1, this.deps.random, this.backoff);
        const retryTimer = this.deps.clock.setTimeout(() => {
          if (e.forward.kind === 'failed' && link.state.kind === 'up') this.requestForward(e, link);
        }, delay);
        e.forward = { kind: 'failed', reason, retryTimer };
        e.log.warn({ reason, retryInMs: delay }, 'the remote peer refused to listen; will retry');
        this.changes.emit('change');
      },
    );
  }

  /** "local": the remote peer carries back a connection; we dial the destination. */
  private onCarriedBack(
    exposures: Set<Exposure>,
    info: TcpConnectionDetails,
    accept: () => ClientChannel,
    reject: () => void,
  ): void {
    // ssh2 only hands over connections for ports we asked for. The forward may still read
    // "requesting": the first connection can arrive in the same read as the remote's yes.
    const e = [...exposures].find(
      (x) =>
        x.spec.type === 'local' &&
        !x.removed &&
        x.spec.sourcePort === info.destPort &&
        x.spec.sourceAddr === info.destIP,
    );
    if (!e || this.draining) {
      reject();
      return;
    }
    const dest = e.spec.destinationAddr;
    dialDestination(dest.host, dest.port, DIAL_TIMEOUT_MS).then(
      (socket) => {
        if (e.removed) {
          socket.destroy();
          reject();
          return;
        }
        const ch = accept();
        this.open.add(socket);
        this.track(e, socket);
        this.track(e, ch);
        e.log.debug({ from: `${info.srcIP}:${info.srcPort}` }, 'connection carried back and dialled');
        relay(socket, ch, () => {});
      },
      (err: Error) => {
        e.log.warn({ destination: formatHostPort(dest), reason: err.message }, 'cannot dial the destination');
        reject();
      },
    );
  }

  /** "remote": a connection arrives on our listener; the remote peer dials the destination. */
  private onLocalConnection(e: Exposure, socket: Socket): void {
    socket.on('error', () => {});
    this.open.add(socket);
    this.track(e, socket);
    const link = this.links.get(e.linkKey)?.link;
    const from = `${socket.remoteAddress}:${socket.remotePort}`;
    if (link?.state.kind !== 'up') {
      e.log.warn({ from }, 'connection dropped: not connected to the remote peer');
      socket.destroy();
      return;
    }
    const dest = e.spec.destinationAddr;
    link.openDirect(dest.host, dest.port, socket.remoteAddress ?? '127.0.0.1', socket.remotePort ?? 0).then(
      (ch) => {
        if (e.removed || socket.destroyed) {
          ch.destroy();
          socket.destroy();
          return;
        }
        this.track(e, ch);
        e.log.debug({ from }, 'connection carried to the remote peer');
        relay(socket, ch, () => {});
      },
      (err: Error) => {
        e.log.warn(
          { from, destination: formatHostPort(dest), err: err.message },
          'connection dropped: the remote peer could not dial the destination',
        );
        socket.destroy();
      },
    );
  }

  private track(e: Exposure, s: Duplex): void {
    e.streams.add(s);
    s.once('close', () => e.streams.delete(s));
  }
}
