import type { ForwardEndpoint, ForwardRegistry } from '../core/forward-registry.js';
import { cleanText, isValidLabel } from '../core/ids.js';
import type { RefusalLog } from '../core/refusals.js';
import type { TenantService } from '../core/tenants.js';
import { type ErrorCode, isTetherError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import type { RepoMeta } from '../store/types.js';
import type { GatewayMessage } from './control-protocol.js';
import { checkRepoMeta } from './control-validate.js';
import type { ManagedHooks, ManagedPeer } from './managed-control.js';

/**
 * Repository metadata a session may hold beyond its quota: room for a connector that announces a
 * repository before the forward of another one is cancelled.
 */
export const META_MARGIN = 8;

/** One tenant session's state, as the control messages see it. */
export interface ControlContext {
  tenant: string;
  fingerprint: string;
  source: string;
  slog: Logger;
  metas: Map<string, RepoMeta>;
  forwards: Map<string, { port: number; endpoint: ForwardEndpoint }>;
  /** The tenant's quota when the session opened (bounds the metadata it may leave with us). */
  quota: () => number;
  sendControl: (m: GatewayMessage) => void;
  setAgent: (a: string) => void;
  setUnregistering: (on: boolean) => void;
  end: (reason: string) => void;
  /** This channel as managed repositories see it (when they are on). */
  managedPeer?: ManagedPeer;
}

export interface ControlDeps {
  registry: ForwardRegistry;
  tenants: TenantService;
  refusals: RefusalLog;
  onRepoMeta?: (tenant: string, label: string, meta: RepoMeta) => void;
  managed?: ManagedHooks;
}

/** Handles one message from a connector's control channel. Every field is checked here. */
export function onControlMessage(msg: Record<string, unknown>, s: ControlContext, deps: ControlDeps): void {
  switch (msg.type) {
    case 'hello':
      s.setAgent(typeof msg.agent === 'string' && msg.agent !== '' ? cleanText(msg.agent, 100) : 'connector');
      if (s.managedPeer && typeof msg.hostname === 'string')
        s.managedPeer.hostname = cleanText(msg.hostname, 100);
      return;
    case 'managed':
      if (s.managedPeer) deps.managed?.report(s.managedPeer, msg);
      return;
    case 'managed-ready':
      if (s.managedPeer) deps.managed?.ready(s.managedPeer);
      return;
    case 'repo':
      onRepo(msg, s, deps);
      return;
    case 'withdraw':
    case 'restore': {
      const label = typeof msg.label === 'string' ? msg.label : '';
      const f = s.forwards.get(label);
      if (!f) return;
      f.endpoint.withdrawn =
        msg.type === 'withdraw'
          ? cleanText(typeof msg.reason === 'string' ? msg.reason : 'destination unreachable', 200)
          : undefined;
      s.slog.info(
        { event: `forward.${msg.type}`, label, reason: f.endpoint.withdrawn },
        `forward ${label} ${msg.type === 'withdraw' ? 'withdrawn' : 'restored'}`,
      );
      const live = deps.registry.get(s.tenant, label);
      if (live) deps.registry.changed(live);
      return;
    }
    case 'ping':
      s.sendControl({
        type: 'pong',
        id: typeof msg.id === 'number' && Number.isSafeInteger(msg.id) ? msg.id : 0,
      });
      return;
    case 'unregister':
      s.setUnregistering(true);
      // Removing the key ends every session that used it, this one included (after "unregistered").
      deps.tenants.removeKey(s.tenant, s.fingerprint).then(
        () => s.end('key unregistered'),
        (err: unknown) => {
          s.setUnregistering(false);
          s.sendControl({
            type: 'error',
            code: isTetherError(err) ? err.code : 'INTERNAL',
            message: isTetherError(err) ? err.message : 'unregister failed',
          });
        },
      );
      return;
    default:
      s.sendControl({
        type: 'error',
        code: 'UNKNOWN_CONTROL_MESSAGE',
        message: `unknown control message type ${JSON.stringify(cleanText(String(msg.type), 40))}`,
      });
  }
}

function onRepo(msg: Record<string, unknown>, s: ControlContext, deps: ControlDeps): void {
  const label = typeof msg.label === 'string' ? msg.label : '';
  const refuse = (code: ErrorCode, reason: string, message: string) => {
    deps.refusals.refuse(reason, `${s.tenant}\0${s.source}`, { tenant: s.tenant, source: s.source }, message);
    s.sendControl({ type: 'error', code, message });
  };
  if (!isValidLabel(label)) {
    const shown = label === '' ? 'without a label' : `for ${JSON.stringify(cleanText(label, 80))}`;
    refuse(
      'BAD_REPO_META',
      'bad_repo_meta',
      `repository metadata ${shown} refused: the label must be <group>/<repo> (printable ASCII, at most 200 characters)`,
    );
    return;
  }
  const checked = checkRepoMeta(msg);
  if (!checked.ok) {
    refuse(
      'BAD_REPO_META',
      'bad_repo_meta',
      `repository metadata for ${label} refused: ${checked.field} ${checked.problem}`,
    );
    return;
  }
  const limit = s.quota() + META_MARGIN;
  if (!s.metas.has(label) && s.metas.size >= limit) {
    refuse(
      'REPO_META_LIMIT',
      'repo_meta_per_session',
      `repository metadata for ${label} refused: this session already described ${s.metas.size} repositories (quota ${s.quota()} + ${META_MARGIN})`,
    );
    return;
  }
  const meta = checked.meta;
  s.metas.set(label, meta);
  const f = s.forwards.get(label);
  if (f) {
    f.endpoint.meta = meta;
    const live = deps.registry.get(s.tenant, label);
    if (live) {
      live.meta = meta;
      deps.registry.changed(live);
    }
    deps.onRepoMeta?.(s.tenant, label, meta);
  }
}
