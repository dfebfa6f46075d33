/**
 * The connector's per-repository state: what it forwards (its config), its lease on the
 * gateway, whether its destination answers, its counters and its open connections. How one
 * connection from the gateway is carried to the destination and counted: ./incoming.ts.
 */
import type { Socket } from 'node:net';
import type { RepositoryConfig } from '../config/connect.js';
import { destinationOf } from '../config/uri.js';
import type { Logger } from '../log/index.js';
import type { TunnelSession } from '../tunnel/client.js';
import type { RepoMetaMessage } from '../tunnel/control-protocol.js';
import type { RepoState, RepoStatus } from './status.js';

export interface Repo {
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
  /**
   * Probes of the destination that failed since it became unreachable (the next waits longer);
   * kept when it fails again soon after it came back, so a flapping destination backs off too.
   */
  probes: number;
  /** When a probe last found it reachable again (clock ms). */
  restoredAt?: number;
  live: Set<{ close(): void }>;
  /** Called when the last of `live` ended (a removed repository's connections finishing). */
  onIdle?: () => void;
  /** Proposed by the operator and accepted by the `managed` policy (not from connect.yaml). */
  managed?: boolean;
}

export function newRepo(cfg: RepositoryConfig): Repo {
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
    probes: 0,
    live: new Set(),
  };
}

/** What the gateway is told about a repository (shown on its dashboard). */
export function metaOf(r: RepositoryConfig): RepoMetaMessage {
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

/** Whether two configs of a repository reach the same destination. */
export function sameTarget(a: RepositoryConfig, b: RepositoryConfig): boolean {
  return (
    a.service === b.service &&
    a.scheme === b.scheme &&
    a.host === b.host &&
    a.port === b.port &&
    a.path === b.path
  );
}

/** A repository as `tether connector status` shows it. */
export function repoStatus(r: Repo): RepoStatus {
  return {
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
    source: r.managed ? ('managed' as const) : ('connect.yaml' as const),
  };
}

/** Ends a probe connection with a FIN, not a reset, so the service does not log an error. */
export function closeGently(sock: Socket): void {
  sock.on('error', () => {});
  sock.resume();
  sock.end();
  setTimeout(() => sock.destroy(), 2000).unref();
}

/** Cancels a repository's forward on the live session (if it holds one); its open connections stay. */
export function releaseRepo(r: Repo, session: TunnelSession | undefined, log: Logger): void {
  const label = r.cfg.label;
  if (session && r.leasePort !== null && r.leasedOn === session) {
    session.unforward(label, r.leasePort).catch((e: Error) => {
      log.warn(
        { event: 'connector.unforward_failed', label },
        `could not cancel the forward ${label}: ${e.message}`,
      );
    });
  }
}

/** The gateway granted the forward on `port`: the repository is active (or stays withdrawn). */
export function leaseGranted(r: Repo, s: TunnelSession, port: number, log: Logger): void {
  r.leasePort = port;
  r.leasedOn = s;
  if (r.withdrawn) {
    s.send({ type: 'withdraw', label: r.cfg.label, reason: r.reason ?? 'destination unreachable' });
  } else {
    r.state = 'active';
    r.reason = null;
  }
  log.info(
    {
      event: 'connector.forward_active',
      label: r.cfg.label,
      leasePort: port,
      destination: destinationOf(r.cfg),
      service: r.cfg.service,
    },
    `forward ${r.cfg.label} active on gateway port ${port} → ${destinationOf(r.cfg)}`,
  );
}

/** The gateway refused the forward (quota, label, port): the repository says why. */
export function leaseRefused(r: Repo, e: Error & { code?: string }, log: Logger): void {
  r.state = 'rejected';
  r.reason = e.message;
  r.leasePort = null;
  log.warn(
    { event: 'connector.forward_refused', label: r.cfg.label, code: e.code },
    `forward ${r.cfg.label} refused: ${e.message}`,
  );
}

/** The gateway's control channel says why it refused the forward (a repository already active keeps its state). */
export function refusedByGateway(r: Repo, reason: string): void {
  if (r.state === 'active') return;
  r.state = 'rejected';
  r.reason = reason;
}
