/**
 * Sessions the connector is leaving because their gateway drains (it sent `reconnect`): each
 * keeps carrying the connections it has, its forwards are cancelled one by one as the new
 * session takes them over, and it is closed once it carries neither forwards nor connections.
 * The gateway ends it anyway at its `drain_timeout`.
 */

import type { Logger } from '../log/index.js';

/** What this needs of a tunnel session (TunnelSession). */
export interface LeavingSession {
  readonly isOpen: boolean;
  unforward(label: string, port: number): Promise<void>;
  close(): void;
}

interface Leaving {
  /** label → lease port still forwarded on that session. */
  forwards: Map<string, number>;
  connections: number;
}

export class MovingSessions {
  private readonly leaving = new Map<LeavingSession, Leaving>();
  /** Connections per session (every session, so a leaving one knows its count). */
  private readonly counts = new Map<LeavingSession, number>();

  constructor(private readonly log: Logger) {}

  /** Whether a session that is being left is still open (it carries the repositories meanwhile). */
  get active(): boolean {
    return this.leaving.size > 0;
  }

  /** Starts leaving `s`, which holds these forwards (label → port). */
  leave(s: LeavingSession, forwards: Map<string, number>): void {
    this.leaving.set(s, { forwards, connections: this.counts.get(s) ?? 0 });
    this.closeIfDone(s);
  }

  /** The new session took `label` over: cancel it on every session being left. */
  movedOver(label: string): void {
    for (const [s, l] of this.leaving) {
      const port = l.forwards.get(label);
      if (port === undefined) continue;
      l.forwards.delete(label);
      if (s.isOpen) {
        s.unforward(label, port).catch((e: Error) =>
          this.log.debug({ label, err: e.message }, 'could not cancel a forward on the old session'),
        );
      }
      this.closeIfDone(s);
    }
  }

  connectionOpened(s: LeavingSession): void {
    this.counts.set(s, (this.counts.get(s) ?? 0) + 1);
    const l = this.leaving.get(s);
    if (l) l.connections++;
  }

  connectionClosed(s: LeavingSession): void {
    const n = (this.counts.get(s) ?? 1) - 1;
    if (n > 0) this.counts.set(s, n);
    else this.counts.delete(s);
    const l = this.leaving.get(s);
    if (!l) return;
    l.connections--;
    this.closeIfDone(s);
  }

  /** The session closed (the gateway ended it, or we did): forget it. True when it was being left. */
  closed(s: LeavingSession): boolean {
    this.counts.delete(s);
    return this.leaving.delete(s);
  }

  /** Closes every session being left (the connector stops). */
  closeAll(): void {
    for (const s of [...this.leaving.keys()]) s.close();
    this.leaving.clear();
  }

  private closeIfDone(s: LeavingSession): void {
    const l = this.leaving.get(s);
    if (!l || l.forwards.size > 0 || l.connections > 0) return;
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
