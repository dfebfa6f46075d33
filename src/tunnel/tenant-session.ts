import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { Connection, ServerChannel } from 'ssh2';
import type { ForwardAuthorizer } from '../core/authorization.js';
import type { Clock } from '../core/clock.js';
import type { ForwardEndpoint, ForwardRegistry, LiveSession } from '../core/forward-registry.js';
import type { KeyedMutex } from '../core/keyed-mutex.js';
import type { RefusalLog } from '../core/refusals.js';
import type { TenantService } from '../core/tenants.js';
import type { ErrorCode } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import type { RepoMeta, Store } from '../store/types.js';
import { onControlMessage } from './control-messages.js';
import { CONTROL_SUBSYSTEM, encode, type GatewayMessage, JsonLineDecoder } from './control-protocol.js';
import type { LeaseBinder } from './lease-binder.js';
import type { ManagedHooks, ManagedPeer } from './managed-control.js';
import { destroySocket, pauseWhileBacklogged, REFUSE_SESSION, refuseSessionUse } from './session-util.js';
import { sendSshDebug, socketOf } from './ssh2-adapter.js';

/** Per-session bounds on what a logged-in connector may make the gateway hold. */
export interface SessionBounds {
  /** Session channels the connector may have open at once (one control channel is all it needs). */
  maxSessionChannels: number;
  /** `tcpip-forward`/`cancel-tcpip-forward` requests: sustained rate per second and burst. */
  forwardRequestsPerSecond: number;
  forwardRequestsBurst: number;
}

export interface TenantSessionDeps {
  store: Store;
  tenants: TenantService;
  authorizer: ForwardAuthorizer;
  registry: ForwardRegistry;
  leasePorts: LeaseBinder;
  refusals: RefusalLog;
  mutex: KeyedMutex;
  clock: Clock;
  log: Logger;
  version: string;
  nodeId?: string;
  bounds: SessionBounds;
  onRepoMeta?: (tenant: string, label: string, meta: RepoMeta) => void;
  /** Managed repositories: proposals to the connector, its reports back. */
  managed?: ManagedHooks;
}

/** A logged-in connector's session: its forwards, its control channel and their bounds. */
export function runTenantSession(
  client: Connection,
  who: { source: string; address: string; tenant: string; fingerprint: string },
  deps: TenantSessionDeps,
): void {
  const { log, registry, leasePorts, authorizer, refusals, clock, bounds } = deps;
  const { source, address, tenant, fingerprint } = who;
  const id = randomUUID();
  const slog = log.child({ tenant, session: id.slice(0, 8) });
  const forwards = new Map<string, { port: number; endpoint: ForwardEndpoint }>();
  const metas = new Map<string, RepoMeta>();
  let control: ServerChannel | undefined;
  let ended = false;
  let agent = 'ssh';
  let unregistering = false;
  let quota = 0;
  let sessionChannels = 0;
  /** Forward requests waiting for their turn, and the request-rate bucket. */
  let queued = 0;
  let tokens = bounds.forwardRequestsBurst;
  let refilled = clock.now();
  const refusalKey = `${tenant}\0${source}`;

  const live: LiveSession = {
    id,
    tenant,
    source,
    address,
    since: clock.now(),
    fingerprint,
    get agent() {
      return agent;
    },
    traffic: () => {
      const sock = socketOf(client);
      return { received: sock?.bytesRead ?? 0, sent: sock?.bytesWritten ?? 0 };
    },
    end: (reason: string) => {
      if (ended) return;
      slog.info({ event: 'session.ended_by_gateway', reason }, 'ending session');
      // An unregistering connector hears "unregistered" before the session ends.
      if (unregistering) sendControl({ type: 'unregistered', fingerprint });
      else sendControl({ type: 'error', code: 'SESSION_ENDED', message: reason });
      client.end();
      destroySocket(client);
    },
    moveAway: (reason: string) => {
      if (ended || !control || control.destroyed) return false;
      slog.info({ event: 'session.asked_to_move', reason }, 'asked the connector to reconnect elsewhere');
      sendControl({ type: 'reconnect', reason });
      return true;
    },
  };
  const sendControl = (m: GatewayMessage) => {
    if (control && !control.destroyed) control.write(encode(m));
  };
  const managedPeer: ManagedPeer = { tenant, fingerprint, source, hostname: null, send: sendControl, slog };
  let detachManaged: (() => void) | undefined;
  registry.addSession(live);
  slog.info({ event: 'session.opened', source, fingerprint }, 'session opened');

  const makeEndpoint = (label: string, port: number): ForwardEndpoint => ({
    session: live,
    connections: 0,
    open: (origin) =>
      new Promise<Duplex>((resolve, reject) => {
        client.forwardOut(label, port, origin.address, origin.port, (err, ch) => {
          if (err) return reject(err);
          // ssh2 closes server-side channels as soon as their write side ends; a caller that
          // half-closes (sends FIN, then waits for the answer) needs EOF only.
          (ch as unknown as { server: boolean }).server = false;
          resolve(ch as unknown as Duplex);
        });
      }),
  });

  const refuse = (rawLabel: string, code: ErrorCode, reason: string, reject?: () => void) => {
    const label = cleanLabel(rawLabel);
    slog.info({ event: 'forward.refused', label, code, reason }, `forward refused: ${reason}`);
    sendSshDebug(client, `tether: forward ${label} refused: ${reason}`);
    sendControl({ type: 'refused', label, code, reason });
    reject?.();
  };

  /** A forward request over the session's rate or queue: refused, logged once per burst. */
  const overRate = (): string | undefined => {
    const now = clock.now();
    tokens = Math.min(
      bounds.forwardRequestsBurst,
      tokens + ((now - refilled) / 1000) * bounds.forwardRequestsPerSecond,
    );
    refilled = now;
    if (queued >= bounds.forwardRequestsBurst) {
      return `too many forward requests waiting (at most ${bounds.forwardRequestsBurst} per session)`;
    }
    if (tokens < 1) {
      return `too many forward requests (at most ${bounds.forwardRequestsPerSecond} per second, bursts of ${bounds.forwardRequestsBurst})`;
    }
    tokens -= 1;
    return undefined;
  };

  client.on('request', (accept, reject, name, info) => {
    if (name === 'tcpip-forward' || name === 'cancel-tcpip-forward') {
      const { bindAddr: label } = info as { bindAddr: string; bindPort: number };
      const over = overRate();
      if (over) {
        refusals.refuse(
          'forward_requests_per_session',
          refusalKey,
          { tenant, source },
          `forward request refused: ${over}`,
        );
        const shown = cleanLabel(label);
        sendSshDebug(client, `tether: forward ${shown} refused: ${over}`);
        sendControl({ type: 'refused', label: shown, code: 'FORWARD_RATE_LIMITED', reason: over });
        reject?.();
        return;
      }
    }
    if (name === 'tcpip-forward') {
      const { bindAddr: label, bindPort } = info as { bindAddr: string; bindPort: number };
      queued++;
      void deps.mutex
        .run(tenant, async () => {
          if (ended) return;
          const existing = forwards.get(label);
          if (existing && (bindPort === 0 || bindPort === existing.port)) {
            accept?.(existing.port);
            return;
          }
          const d = await authorizer.authorizeForward(tenant, label, bindPort);
          if (!d.ok) return refuse(label, d.code, d.reason, reject);
          try {
            await leasePorts.open(d.port);
          } catch (e) {
            return refuse(label, 'PORT_UNAVAILABLE', (e as Error).message, reject);
          }
          if (ended) return;
          const endpoint = makeEndpoint(label, d.port);
          forwards.set(label, { port: d.port, endpoint });
          const meta = metas.get(label) ?? null;
          registry.add(tenant, label, d.port, endpoint, meta);
          if (meta) deps.onRepoMeta?.(tenant, label, meta);
          slog.info({ event: 'forward.granted', label, port: d.port }, `forward ${label} → port ${d.port}`);
          accept?.(d.port);
          sendControl({ type: 'forward', label, port: d.port });
        })
        .catch((err: unknown) => {
          slog.error({ err, label: cleanLabel(label) }, 'forward request failed');
          refuse(cleanLabel(label), 'INTERNAL', 'the gateway could not process the forward', reject);
        })
        .finally(() => {
          queued--;
        });
      return;
    }
    if (name === 'cancel-tcpip-forward') {
      const { bindAddr: label } = info as { bindAddr: string; bindPort: number };
      const f = forwards.get(label);
      if (!f) return reject?.();
      forwards.delete(label);
      if (registry.remove(tenant, label, f.endpoint)) leasePorts.close(f.port);
      slog.info({ event: 'forward.cancelled', label, port: f.port }, `forward ${label} cancelled`);
      accept?.();
      return;
    }
    const req = cleanLabel(String(name));
    slog.info({ event: 'request.refused', request: req }, `global request ${req} refused`);
    reject?.();
  });

  client.on('session', (acceptSession, rejectSession) => {
    if (sessionChannels >= bounds.maxSessionChannels) {
      const why = `too many session channels (at most ${bounds.maxSessionChannels} at once; a connector needs one)`;
      refusals.refuse(
        'channels_per_session',
        refusalKey,
        { tenant, source },
        `session channel refused: ${why}`,
      );
      sendControl({ type: 'error', code: 'CHANNEL_LIMIT', message: why });
      rejectSession?.();
      return;
    }
    sessionChannels++;
    const session = acceptSession();
    let counted = true;
    session.once('close', () => {
      if (counted) sessionChannels--;
      counted = false;
    });
    session.on('subsystem', (accept, _reject, info: { name: string }) => {
      if (info.name !== CONTROL_SUBSYSTEM || control) {
        const ch = accept();
        ch.stderr.write(REFUSE_SESSION);
        ch.exit(1);
        ch.end();
        return;
      }
      control = accept();
      const ch = control;
      // Messages wait until the quota is known: it bounds the metadata this session may leave.
      ch.pause();
      const decoder = new JsonLineDecoder(
        (msg) => {
          onControlMessage(
            msg,
            {
              tenant,
              fingerprint,
              source,
              slog,
              metas,
              forwards,
              quota: () => quota,
              sendControl,
              setAgent: (a) => {
                agent = a;
              },
              setUnregistering: (on: boolean) => {
                unregistering = on;
              },
              end: live.end,
              managedPeer,
            },
            deps,
          );
        },
        (why) => sendControl({ type: 'error', code: 'BAD_CONTROL_MESSAGE', message: why }),
      );
      ch.on('data', (c: Buffer) => {
        decoder.push(c);
        pauseWhileBacklogged(ch);
      });
      ch.on('close', () => {
        if (control === ch) control = undefined;
        detachManaged?.();
        detachManaged = undefined;
      });
      void deps.store
        .getTenant(tenant)
        .then(
          (t) => {
            quota = t?.quota ?? 0;
            sendControl({ type: 'welcome', tenant, quota, gateway: deps.version, node: deps.nodeId });
            if (!ended && control === ch) detachManaged = deps.managed?.attach(managedPeer);
          },
          (err: unknown) => slog.warn({ err }, 'could not read the tenant for the welcome'),
        )
        .finally(() => ch.resume());
    });
    refuseSessionUse(session);
  });

  client.on('close', () => {
    ended = true;
    detachManaged?.();
    detachManaged = undefined;
    for (const [label, f] of forwards) {
      if (registry.remove(tenant, label, f.endpoint)) leasePorts.close(f.port);
    }
    forwards.clear();
    metas.clear();
    registry.removeSession(live);
    slog.info(
      { event: 'session.closed', source, fingerprint, duration_ms: clock.now() - live.since },
      'session closed',
    );
  });
}

/** A label from the peer as we may echo or log it: printable, bounded. */
function cleanLabel(label: unknown): string {
  return typeof label === 'string' ? label.slice(0, 200).replace(/[^\x20-\x7e]/g, '?') : '';
}
