import type { Component } from '../core/component.js';
import type { GatewayContext } from './index.js';

/** What a drain did, for its log line and for the caller. */
export interface DrainResult {
  /** Forwarded connections open when the drain began. */
  connections: number;
  /** Connector sessions when the drain began, and how many of them were asked to move. */
  sessions: number;
  asked: number;
  /** Asked sessions whose forwards moved to another member before the lease ports closed. */
  moved: number;
  /** Connections still open at `drain_timeout` (cut by the stop that follows). */
  cut: number;
  durationMs: number;
}

const MOVE_REASON = 'the gateway is shutting down (drain): reconnect now';

/**
 * SIGTERM's first step, before `Gateway.stop()`: stop accepting everywhere (the tunnel port and
 * its transports, the front doors, the lease ports), ask every Tether connector to reconnect
 * elsewhere (`reconnect` on its control channel), and let the forwarded connections the broker
 * tracks finish, until `timeoutMs` after `startedAt`.
 *
 * In a cluster the lease ports stay open while the connectors asked to move still serve a
 * forward here (at most until the timeout): callers keep reaching them through this member until
 * another member serves the same lease, so no caller meets a gap. A single gateway has nowhere
 * to move them: its lease ports close at once.
 */
export async function drainGateway(
  ctx: GatewayContext,
  components: readonly Component[],
  opts: { timeoutMs: number; startedAt: number; handover: boolean },
): Promise<DrainResult> {
  const { log, clock, registry, broker, tunnel, listeners } = ctx;
  const deadline = opts.startedAt + opts.timeoutMs;
  const left = () => Math.max(0, deadline - clock.now());
  // a primary (`workers`) carries none itself: it asks its workers (each logs its own drain too)
  const elsewhere =
    ctx.role?.kind === 'primary' ? await ctx.role.workerCounts() : { connections: 0, sessions: 0 };
  const connections = broker.openCount() + elsewhere.connections;
  const sessions = registry.sessionsOf().length + elsewhere.sessions;
  log.info(
    { event: 'gateway.draining', connections, sessions, drain_timeout_ms: opts.timeoutMs },
    `draining: stop accepting, ask ${sessions} connector session(s) to reconnect elsewhere, let ${connections} open connection(s) finish within ${opts.timeoutMs} ms`,
  );
  await tunnel.stopAccepting();
  for (const c of components) {
    await c.drain?.().catch((err: unknown) => log.warn({ err, component: c.name }, 'could not drain'));
  }
  const asked = tunnel.askToMove(MOVE_REASON);
  let moved = 0;
  if (opts.handover && asked.size > 0) {
    const stillHere = () => {
      const serving = new Set<string>();
      for (const f of registry.list())
        for (const e of f.endpoints) if (asked.has(e.session.id)) serving.add(e.session.id);
      return serving;
    };
    await until(ctx, () => stillHere().size === 0, left());
    moved = asked.size - stillHere().size;
  }
  if (opts.handover) await leasePortsQuiet(listeners, left());
  listeners.stopAccepting();
  const finished = await broker.idle(left());
  // a primary's workers drained (its own drain step waited for them): their outcome is the gateway's
  const workers = ctx.role?.kind === 'primary' ? ctx.role.workersDrained() : { asked: 0, moved: 0, cut: 0 };
  const cut = (finished ? 0 : broker.openCount()) + workers.cut;
  const result: DrainResult = {
    connections,
    sessions,
    asked: asked.size + workers.asked,
    moved: moved + workers.moved,
    cut,
    durationMs: clock.now() - opts.startedAt,
  };
  const fields = { event: 'gateway.drained', ...snake(result) };
  if (cut > 0) {
    log.warn(fields, `drain_timeout (${opts.timeoutMs} ms) reached: cutting ${cut} connection(s) still open`);
  } else {
    log.info(fields, `drained in ${result.durationMs} ms: every open connection finished`);
  }
  return result;
}

/**
 * How long the lease ports of a draining cluster member must see no new caller before they
 * close. The load balancer stops sending callers once it sees the tunnel port closed (the first
 * step of a drain), but until its next health check it still does: a listener closed under it
 * resets the connections waiting in its accept queue, which callers see as "socket hang up".
 */
const LEASE_QUIET_MS = 1_000;

/** Resolves once no lease port accepted a connection for LEASE_QUIET_MS, or after `ms`. */
async function leasePortsQuiet(listeners: GatewayContext['listeners'], ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const quietFor = Date.now() - listeners.lastAcceptAt;
    if (quietFor >= LEASE_QUIET_MS || Date.now() >= deadline) return;
    await new Promise((r) => setTimeout(r, Math.min(LEASE_QUIET_MS - quietFor, deadline - Date.now()) + 5));
  }
}

/** Resolves when `done()` holds (checked on every forward and session change) or after `ms`. */
function until(ctx: GatewayContext, done: () => boolean, ms: number): Promise<void> {
  if (done()) return Promise.resolve();
  const { registry, clock } = ctx;
  return new Promise((resolve) => {
    const check = () => {
      if (!done()) return;
      finish();
    };
    const finish = () => {
      clock.clearTimeout(timer);
      registry.off('forward', check);
      registry.off('session', check);
      resolve();
    };
    const timer = clock.setTimeout(finish, ms);
    registry.on('forward', check);
    registry.on('session', check);
  });
}

function snake(r: DrainResult): Record<string, number> {
  return {
    connections: r.connections,
    sessions: r.sessions,
    asked_to_move: r.asked,
    moved: r.moved,
    cut: r.cut,
    duration_ms: r.durationMs,
  };
}
