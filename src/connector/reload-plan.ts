/**
 * What a reload of connect.yaml changes: which repositories come, go or get a new destination,
 * and whether the session must be opened again (new gateway, transport, tenant, key, pin or
 * keepalive). Pure decisions; the supervisor carries them out.
 */
import { type ConnectConfig, gatewayText, type RepositoryConfig } from '../config/connect.js';
import { TetherError } from '../errors/index.js';

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

/** Labels of `current` that `next` no longer has. */
export function removedLabels(current: Iterable<string>, next: readonly RepositoryConfig[]): string[] {
  const keep = new Set(next.map((r) => r.label));
  return [...current].filter((label) => !keep.has(label));
}
