import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../core/clock.js';

/** What a dashboard user may do: `admin` everything, `viewer` read only. */
export type Role = 'admin' | 'viewer';

/** Who signed in, as the provider vouched for them. */
export interface SessionUser {
  /** The provider's subject (`sub`). */
  subject: string;
  email: string | null;
  name: string | null;
  groups: string[];
  role: Role;
}

export interface Session {
  user: SessionUser;
  /** Sent back by the page on every change (X-CSRF-Token), compared with this. */
  csrf: string;
  createdAt: number;
  lastSeen: number;
}

export interface SessionLimits {
  idleMs: number;
  lifetimeMs: number;
  maxSessions: number;
  maxPerUser: number;
}

/** The result of a sign-in: the cookie value, or why there is no room. */
export type CreateResult =
  | { ok: true; id: string; session: Session; evicted: number }
  | { ok: false; reason: 'full' };

/** The store keys sessions by a hash of the cookie value, so a lookup's timing tells nothing about live ids. */
function keyOf(id: string): string {
  return createHash('sha256').update(id).digest('base64url');
}

/**
 * Server-side dashboard sessions in memory, keyed by a random cookie value (32 bytes). Each ends
 * after `idleMs` without use or `lifetimeMs` after sign-in, whichever comes first; at most
 * `maxSessions` at once (a sign-in past it is refused) and `maxPerUser` per subject (the user's
 * oldest ends). A gateway restart ends every session (users sign in again).
 */
export class SessionStore {
  private readonly sessions = new Map<string, Session>();
  private readonly watchers = new Map<string, Set<() => void>>();
  private sweepTimer: unknown = null;

  constructor(
    private readonly clock: Clock,
    readonly limits: SessionLimits,
  ) {}

  get size(): number {
    return this.sessions.size;
  }

  create(user: SessionUser): CreateResult {
    this.sweep();
    let evicted = 0;
    const mine = [...this.sessions].filter(([, s]) => s.user.subject === user.subject);
    while (mine.length >= this.limits.maxPerUser) {
      const [key] = mine.shift()!; // insertion order: the oldest first
      this.end(key);
      evicted++;
    }
    if (this.sessions.size >= this.limits.maxSessions) return { ok: false, reason: 'full' };
    const id = randomBytes(32).toString('base64url');
    const now = this.clock.now();
    const session: Session = {
      user,
      csrf: randomBytes(24).toString('base64url'),
      createdAt: now,
      lastSeen: now,
    };
    this.sessions.set(keyOf(id), session);
    this.scheduleSweep();
    return { ok: true, id, session, evicted };
  }

  /** The live session of a cookie value (without using it), or undefined (unknown, ended or expired). */
  peek(id: string | undefined): Session | undefined {
    if (!id || id.length > 100) return undefined;
    const key = keyOf(id);
    const s = this.sessions.get(key);
    if (!s) return undefined;
    if (this.expiresAt(s) <= this.clock.now()) {
      this.end(key);
      return undefined;
    }
    return s;
  }

  /** Like peek, and counts as use (moves the idle expiry). */
  use(id: string | undefined): Session | undefined {
    const s = this.peek(id);
    if (s) s.lastSeen = this.clock.now();
    return s;
  }

  /** When a session ends unless it is used again. */
  expiresAt(s: Session): number {
    return Math.min(s.lastSeen + this.limits.idleMs, s.createdAt + this.limits.lifetimeMs);
  }

  /** Sign-out. True when there was such a session. */
  delete(id: string | undefined): boolean {
    if (!id || id.length > 100) return false;
    return this.end(keyOf(id));
  }

  /**
   * Calls `onEnd` once when the session of `id` ends (sign-out, expiry, eviction); returns a
   * function that stops watching. An open event stream uses it to close with its session.
   */
  watch(id: string, onEnd: () => void): () => void {
    const key = keyOf(id);
    const set = this.watchers.get(key) ?? new Set<() => void>();
    this.watchers.set(key, set);
    set.add(onEnd);
    this.scheduleSweep();
    return () => {
      set.delete(onEnd);
      if (set.size === 0 && this.watchers.get(key) === set) this.watchers.delete(key);
    };
  }

  /** Ends every session (the gateway stops). */
  close(): void {
    for (const key of [...this.sessions.keys()]) this.end(key);
    if (this.sweepTimer !== null) this.clock.clearTimeout(this.sweepTimer);
    this.sweepTimer = null;
  }

  private end(key: string): boolean {
    const had = this.sessions.delete(key);
    const set = this.watchers.get(key);
    if (set) {
      this.watchers.delete(key);
      for (const fn of set) fn();
    }
    return had;
  }

  /** Drops expired sessions (and tells their watchers). */
  private sweep(): void {
    const now = this.clock.now();
    for (const [key, s] of this.sessions) if (this.expiresAt(s) <= now) this.end(key);
    for (const key of [...this.watchers.keys()]) if (!this.sessions.has(key)) this.end(key);
  }

  /** One timer for the earliest expiry, so watchers hear of an expiry when it happens. */
  private scheduleSweep(): void {
    if (this.sweepTimer !== null) this.clock.clearTimeout(this.sweepTimer);
    this.sweepTimer = null;
    if (this.sessions.size === 0) return;
    let next = Number.POSITIVE_INFINITY;
    for (const s of this.sessions.values()) next = Math.min(next, this.expiresAt(s));
    this.sweepTimer = this.clock.setTimeout(
      () => {
        this.sweepTimer = null;
        this.sweep();
        this.scheduleSweep();
      },
      Math.max(0, next - this.clock.now()),
    );
  }
}
