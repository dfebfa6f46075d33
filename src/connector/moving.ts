/**
 * The connector's move away from a draining gateway (it sent `reconnect`): a new session is
 * opened at once, without backoff (the load balancer sends it to another member); the old one
 * keeps carrying the connections it has, its forwards are cancelled one by one as the new
 * session takes them over, and it is closed once it carries neither forwards nor connections.
 * The gateway ends it anyway at its `drain_timeout`. `DrainMove` is what the supervisor
 * (./supervisor.ts) calls; `MovingSessions` tracks the sessions being left, and counts the
 * connections of every session, which the connector's own draining stop waits for.
 */

import type { Clock } from '../core/clock.js';
import type { TetherError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import type { Backoff } from '../tunnel/backoff.js';

/**
 * A gateway's `reconnect` moves the connector at once, unless the last move was less than this
 * long ago: then the backoff decides (a gateway that keeps asking cannot make it reconnect in a
 * tight loop).
 */
export const MOVE_AGAIN_AFTER_MS = 10_000;

/** What this needs of a tunnel session (TunnelSession). */
export interface LeavingSession {
  readonly isOpen: boolean;
  unforward(label: string, port: number): Promise<void>;
  close(): void;
}

interface Leaving {
  /** label → lease port still forwarded on that session. */
  forwards: Map<string, number>;
}

export class MovingSessions {
  private readonly leaving = new Map<LeavingSession, Leaving>();
  /** Connections per session (every session, so a leaving one knows its count). */
  private readonly counts = new Map<LeavingSession, number>();
  /** Waiting for the last connection of every session to end (a draining stop). */
  private idle: Array<() => void> = [];

  constructor(private readonly log: Logger) {}

  /** Whether a session that is being left is still open (it carries the repositories meanwhile). */
  get active(): boolean {
    return this.leaving.size > 0;
  }

  /** Starts leaving `s`, which holds these forwards (label → port). */
  leave(s: LeavingSession, forwards: Map<string, number>): void {
    this.leaving.set(s, { forwards });
    this.closeIfDone(s);
  }

  /** The new session took `label` over: cancel it on every session being left. */
  movedOver(label: string): void {
    for (const [s, l] of this.leaving) {
      const port = l.forwards.get(label);
      if (port === undefined) continue;
      l.forwards.delete(label);
      this.unforward(s, label, port);
      this.closeIfDone(s);
    }
  }

  connectionOpened(s: LeavingSession): void {
    this.counts.set(s, (this.counts.get(s) ?? 0) + 1);
  }

  connectionClosed(s: LeavingSession): void {
    const n = (this.counts.get(s) ?? 1) - 1;
    if (n > 0) this.counts.set(s, n);
    else this.counts.delete(s);
    this.wakeIfIdle();
    this.closeIfDone(s);
  }

  /** The session closed (the gateway ended it, or we did): forget it. True when it was being left. */
  closed(s: LeavingSession): boolean {
    this.counts.delete(s);
    this.wakeIfIdle();
    return this.leaving.delete(s);
  }

  /** Connections carried now, on every session. */
  get open(): number {
    let n = 0;
    for (const c of this.counts.values()) n += c;
    return n;
  }

  /** Resolves once no session carries a connection. */
  whenIdle(): Promise<void> {
    if (this.counts.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  /** Cancels the forwards the sessions being left still hold (the connector stops). */
  cancelForwards(): void {
    for (const [s, l] of this.leaving) {
      for (const [label, port] of l.forwards) this.unforward(s, label, port);
      l.forwards.clear();
      this.closeIfDone(s);
    }
  }

  /** Closes every session being left (the connector stops). */
  closeAll(): void {
    for (const s of [...this.leaving.keys()]) s.close();
    this.leaving.clear();
  }

  private wakeIfIdle(): void {
    if (this.counts.size > 0 || this.idle.length === 0) return;
    const waiting = this.idle;
    this.idle = [];
    for (const w of waiting) w();
  }

  private unforward(s: LeavingSession, label: string, port: number): void {
    if (!s.isOpen) return;
    s.unforward(label, port).catch((e: Error) =>
      this.log.debug({ label, err: e.message }, 'could not cancel a forward on the old session'),
    );
  }

  private closeIfDone(s: LeavingSession): void {
    const l = this.leaving.get(s);
    if (!l || l.forwards.size > 0 || this.counts.has(s)) return;
    this.leaving.delete(s);
    this.log.info(
      { event: 'connector.left_old_session' },
      'every forward moved and every connection on the draining gateway finished: closed that session',
    );
    s.close();
  }
}

/** What leaving a session does to the repositories' state (a Repo's fields the move touches). */
export interface MovableRepo {
  cfg: { label: string };
  state: string;
  leasePort: number | null;
  leasedOn: unknown;
  gen: number;
}

/**
 * Detaches the repositories from `old` (they are forwarded again on the new session; the old one
 * serves meanwhile) and returns the forwards it still holds (label → lease port).
 */
export function detachFrom(repos: Iterable<MovableRepo>, old: unknown): Map<string, number> {
  const held = new Map<string, number>();
  for (const r of repos) {
    if (r.leasedOn === old && r.leasePort !== null) held.set(r.cfg.label, r.leasePort);
    if (r.state !== 'rejected' && r.state !== 'unreachable') r.state = 'pending';
    r.leasedOn = undefined;
    r.gen++;
  }
  return held;
}

export interface DrainMoveDeps {
  log: Logger;
  clock: Clock;
  /** The session's reconnect schedule: a move cancels it; a move asked again soon waits for it. */
  backoff: Pick<Backoff, 'cancel' | 'schedule'>;
  /** Opens a new session (the supervisor's connect: nothing while one is open, opening or stopped). */
  connect: () => void;
}

/** The supervisor's side of a drain: start a move, and what a move changes in its session lifecycle. */
export class DrainMove {
  private readonly sessions: MovingSessions;
  private lastMoveAt: number | undefined;

  constructor(private readonly deps: DrainMoveDeps) {
    this.sessions = new MovingSessions(deps.log);
  }

  /** Whether a session being left still carries the repositories. */
  get active(): boolean {
    return this.sessions.active;
  }

  /**
   * The gateway behind `old` drains (the supervisor no longer counts `old` as its session): the
   * repositories are detached from it and forwarded again on a new session, opened now (or after
   * the backoff when the last move was less than MOVE_AGAIN_AFTER_MS ago).
   */
  start(old: LeavingSession, repos: Iterable<MovableRepo>, gateway: string, reason: string): void {
    const { log, backoff, clock } = this.deps;
    log.info(
      { event: 'connector.moving', gateway, reason: String(reason).slice(0, 200) },
      `the gateway ${gateway} drains: reconnecting now, open connections finish on the old session`,
    );
    this.sessions.leave(old, detachFrom(repos, old));
    backoff.cancel();
    const now = clock.now();
    const again = this.lastMoveAt !== undefined && now - this.lastMoveAt < MOVE_AGAIN_AFTER_MS;
    this.lastMoveAt = now;
    if (!again) {
      this.deps.connect();
      return;
    }
    const delay = backoff.schedule(() => this.deps.connect());
    log.warn(
      { event: 'connector.move_delayed', gateway, retryInMs: delay },
      `the gateway asked to reconnect again within ${MOVE_AGAIN_AFTER_MS / 1000} s: reconnecting with backoff`,
    );
  }

  /**
   * Opening a session failed. True while a session being left still carries the repositories:
   * the connector stays on it and tries again as soon as it closes (no backoff meanwhile).
   */
  openFailed(gateway: string, err: TetherError): boolean {
    if (!this.sessions.active) return false;
    this.deps.log.warn(
      { event: 'connector.move_failed', gateway, code: err.code },
      `could not reach another gateway while the current one drains (${err.message}); staying on it until it closes`,
    );
    return true;
  }

  /**
   * A session closed. True when it was one being left: when no other is left, a move that found
   * no new session reconnects now.
   */
  closed(s: LeavingSession): boolean {
    if (!this.sessions.closed(s)) return false;
    if (!this.sessions.active) this.deps.connect();
    return true;
  }

  /** The new session holds `label` now: its forward on the old session is cancelled. */
  forwardMoved(label: string): void {
    this.sessions.movedOver(label);
  }

  connectionOpened(s: LeavingSession): void {
    this.sessions.connectionOpened(s);
  }

  connectionClosed(s: LeavingSession): void {
    this.sessions.connectionClosed(s);
  }

  /** Connections carried now, on the current session and those being left. */
  get openConnections(): number {
    return this.sessions.open;
  }

  /** Resolves once no session carries a connection. */
  whenIdle(): Promise<void> {
    return this.sessions.whenIdle();
  }

  /** The connector drains before it stops: the sessions being left cancel what they still forward. */
  cancelForwards(): void {
    this.sessions.cancelForwards();
  }

  /** The connector stops: every session being left is closed. */
  closeAll(): void {
    this.sessions.closeAll();
  }
}
