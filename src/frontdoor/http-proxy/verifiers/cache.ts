import { hash } from 'node:crypto';
import type { Clock } from '../../../core/clock.js';
import { makeRoom } from '../../../core/make-room.js';
import {
  type CallerCredential,
  type Verdict,
  type VerdictShare,
  type Verifier,
  verifierUnavailableError,
} from './types.js';

export interface VerifyCacheOptions {
  /** How long a valid answer is kept. */
  ttl: number;
  /** How long an invalid answer is kept. */
  failureTtl: number;
  /** Bound on remembered tokens; the oldest go first. */
  maxEntries?: number;
  /** Under `workers`: the verdicts of the other workers (used for a verifier that names its `version`). */
  share?: VerdictShare;
}

interface Entry {
  verdict: Verdict;
  expires: number;
  generation: number;
}

/**
 * Caches a verifier's answers per credential (keyed by a SHA-256 of username and token, so
 * no token is kept in clear) and lets concurrent requests with the same credential share one
 * call. "Unavailable" answers are never cached: the next request asks again.
 */
export class CachedVerifier implements Verifier {
  private readonly entries = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<Verdict>>();
  /** Calls that reached the inner verifier. */
  calls = 0;

  constructor(
    private readonly inner: Verifier,
    private readonly clock: Clock,
    private readonly opts: VerifyCacheOptions,
  ) {}

  verify(c: CallerCredential): Promise<Verdict> {
    const v = this.check(c);
    return v instanceof Promise ? v : Promise.resolve(v);
  }

  /** The cache key of a credential: a SHA-256, so no token is kept in clear. */
  static keyOf(c: CallerCredential): string {
    return hash('sha256', `${c.username ?? ''}\0${c.token}`, 'base64');
  }

  /** A fresh cached answer under this key, if any. */
  peek(key: string): Verdict | undefined {
    const hit = this.entries.get(key);
    if (!hit) return undefined;
    if (hit.expires > this.clock.now() && hit.generation === (this.inner.generation?.() ?? 0))
      return hit.verdict;
    this.entries.delete(key);
    return undefined;
  }

  /**
   * The cached answer right away when there is one (the hot path: no promise), else the pending
   * check. `key` lets a caller cache under its own digest of the credential (e.g. of the whole
   * Authorization header, which spares decoding it on a hit).
   */
  check(c: CallerCredential, key = CachedVerifier.keyOf(c)): Verdict | Promise<Verdict> {
    const gen = this.inner.generation?.() ?? 0;
    const hit = this.peek(key);
    if (hit) return hit;
    const pending = this.inflight.get(key);
    if (pending) return pending;
    const share = this.inner.version ? this.opts.share : undefined;
    const p = (share ? this.viaShare(share, c, key, gen) : this.verifyHere(c, key, gen)).then(
      (verdict) => {
        this.inflight.delete(key);
        return verdict;
      },
      (err: unknown) => {
        this.inflight.delete(key);
        throw err;
      },
    );
    this.inflight.set(key, p);
    return p;
  }

  /** Asks the inner verifier, and keeps its answer. */
  private async verifyHere(c: CallerCredential, key: string, gen: number): Promise<Verdict> {
    this.calls++;
    const verdict = await this.inner.verify(c);
    const ttl = this.ttlOf(verdict);
    if (ttl > 0) this.store(key, { verdict, expires: this.clock.now() + ttl, generation: gen });
    return verdict;
  }

  /**
   * The other workers' verdict when they have one (or once the one verifying it answered);
   * else verified here, and the answer told to them.
   */
  private async viaShare(
    share: VerdictShare,
    c: CallerCredential,
    key: string,
    gen: number,
  ): Promise<Verdict> {
    // the version of the source of truth is part of the shared key: a worker that reloaded a
    // token file shares nothing with one that has not yet
    const shared = `${this.inner.version?.() ?? ''}\0${key}`;
    const a = await share.get(shared);
    if (a === 'go') {
      let verdict: Verdict;
      try {
        verdict = await this.verifyHere(c, key, gen);
      } catch (err) {
        share.put(shared, { unavailable: err instanceof Error ? err.message : String(err) }, 0);
        throw err;
      }
      const ttl = this.ttlOf(verdict);
      share.put(shared, { verdict, ttl }, ttl);
      return verdict;
    }
    if ('unavailable' in a) throw verifierUnavailableError(a.unavailable);
    const verdict = { ...a.verdict, shared: true };
    if (a.ttl > 0) this.store(key, { verdict, expires: this.clock.now() + a.ttl, generation: gen });
    return verdict;
  }

  private ttlOf(v: Verdict): number {
    return v.ok ? this.opts.ttl : this.opts.failureTtl;
  }

  generation(): number {
    return this.inner.generation?.() ?? 0;
  }

  /** Forgets every answer (e.g. a group key was rotated). */
  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }

  close(): void {
    this.inner.close?.();
  }

  private store(key: string, e: Entry): void {
    makeRoom(this.entries, this.opts.maxEntries ?? 10_000, this.clock.now());
    this.entries.set(key, e);
  }
}
