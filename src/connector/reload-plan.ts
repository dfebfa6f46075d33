/**
 * What a reload of connect.yaml changes: which repositories come, go or get a new destination,
 * and whether the session must be opened again (new gateway, transport, tenant, key, pin or
 * keepalive). Pure decisions; the supervisor carries them out.
 */
import { type ConnectConfig, gatewayText } from '../config/connect.js';
import { TetherError } from '../errors/index.js';
import type { TunnelSession } from '../tunnel/client.js';
import { metaOf, newRepo, type Repo, sameTarget } from './repository.js';

export interface ReloadResult {
  added: string[];
  removed: string[];
  changed: string[];
  reconnect: boolean;
  /** Changes that wait for a restart (e.g. metrics_listen), as messages for the user. */
  warnings?: string[];
}

/** Whether going from `prev` to `next` needs a new session. Throws for a change a reload cannot make. */
export function needsReconnect(prev: ConnectConfig, next: ConnectConfig): boolean {
  if (prev.stateDir !== next.stateDir) {
    throw new TetherError(
      'RELOAD_STATE_DIR',
      `${next.file}: state_dir cannot change while the connector runs (stop it, then start it again)`,
      { status: 400 },
    );
  }
  return (
    gatewayText(prev.gateway, prev.transport) !== gatewayText(next.gateway, next.transport) ||
    JSON.stringify(prev.transport) !== JSON.stringify(next.transport) ||
    prev.tenant !== next.tenant ||
    prev.sshKey !== next.sshKey ||
    prev.gatewayFingerprint !== next.gatewayFingerprint ||
    prev.keepaliveInterval !== next.keepaliveInterval ||
    prev.keepaliveCountMax !== next.keepaliveCountMax ||
    prev.maxWindow !== next.maxWindow
  );
}

/** What reconciling the repositories with a new connect.yaml acts on (the supervisor's state). */
export interface RepoReconcile {
  repos: Map<string, Repo>;
  session: TunnelSession | undefined;
  /** Forgets a repository: its forward is cancelled and its open connections end (after drain_timeout). */
  drop(label: string, r: Repo): void;
  /** Asks the gateway for a forward. */
  request(r: Repo): void;
  stopProbe(r: Repo): void;
}

/**
 * Brings the connector's repositories in line with `next`: removed ones go, new ones are asked
 * for (at once unless a new session follows), a changed destination is told to the gateway.
 * A managed entry stays unless a local one takes its label (the local entry wins).
 */
export function reconcileRepositories(
  next: ConnectConfig,
  reconnect: boolean,
  c: RepoReconcile,
): ReloadResult {
  const result: ReloadResult = { added: [], removed: [], changed: [], reconnect };
  const nextLabels = new Set(next.repositories.map((r) => r.label));
  for (const [label, r] of [...c.repos]) {
    if (r.managed ? !nextLabels.has(label) : nextLabels.has(label)) continue;
    c.drop(label, r);
    if (!r.managed) result.removed.push(label);
  }
  for (const rc of next.repositories) {
    const r = c.repos.get(rc.label);
    if (!r) {
      const fresh = newRepo(rc);
      c.repos.set(rc.label, fresh);
      result.added.push(rc.label);
      if (!reconnect) c.request(fresh);
      continue;
    }
    if (!sameTarget(r.cfg, rc)) {
      result.changed.push(rc.label);
      r.cfg = rc;
      c.stopProbe(r);
      if (r.state === 'unreachable') {
        r.state = r.leasedOn === c.session && r.leasePort !== null ? 'active' : 'pending';
        r.reason = null;
      }
      if (r.withdrawn) {
        r.withdrawn = false;
        c.session?.send({ type: 'restore', label: rc.label });
      }
      c.session?.send(metaOf(rc));
    } else {
      r.cfg = rc;
    }
    // A refused forward may fit now (others removed, quota raised): ask again.
    if (r.state === 'rejected' && !reconnect) c.request(r);
  }
  return result;
}
