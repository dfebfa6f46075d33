import { hash } from 'node:crypto';
import type { RouteAuthConfig } from '../../config/http-proxy.js';
import type { CallerCredential, Verdict, Verifier } from './verifiers/types.js';

/** What the caller put in its Authorization header. */
export type Presented =
  | { scheme: 'basic'; username: string; password: string }
  | { scheme: 'bearer'; token: string }
  | { scheme: 'other' };

/** Parses an Authorization header; undefined when absent, "malformed" when unreadable. */
export function parseAuthorization(h: string | undefined): Presented | 'malformed' | undefined {
  if (h === undefined || h === '') return undefined;
  const sp = h.indexOf(' ');
  const scheme = (sp < 0 ? h : h.slice(0, sp)).toLowerCase();
  const rest = sp < 0 ? '' : h.slice(sp + 1).trim();
  if (scheme === 'basic') {
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(rest)) return 'malformed';
    const text = Buffer.from(rest, 'base64').toString('utf8');
    const colon = text.indexOf(':');
    if (colon < 0) return 'malformed';
    // Control characters would reach a remote verifier's Authorization header (and the logs).
    // biome-ignore lint/suspicious/noControlCharactersInRegex: that is the point
    if (/[\x00-\x1f\x7f]/.test(text)) return 'malformed';
    return { scheme: 'basic', username: text.slice(0, colon), password: text.slice(colon + 1) };
  }
  if (scheme === 'bearer') {
    if (!/^[\x21-\x7e]+$/.test(rest)) return 'malformed';
    return { scheme: 'bearer', token: rest };
  }
  return { scheme: 'other' };
}

export type AuthOutcome =
  /**
   * `user`: the Basic username, on an answer that was just verified (not on a cached one);
   * `shared`: another worker verified it (and logged it).
   */
  | { ok: true; subject: string | null; scopes: readonly string[] | null; user?: string; shared?: boolean }
  /** `presented`: the caller sent credentials that were wrong (counts toward the throttle). */
  | { ok: false; message: string; presented: boolean; user?: string };

function outcome(v: Verdict, c: CallerCredential | { missing: string } | { wrong: string }): AuthOutcome {
  // a verdict another worker made was logged there
  if (v.ok && v.shared) return { ok: true, subject: v.subject, scopes: v.scopes, shared: true };
  return v.ok
    ? { ok: true, subject: v.subject, scopes: v.scopes, ...('username' in c ? { user: c.username } : {}) }
    : {
        ok: false,
        message: 'invalid credentials',
        presented: true,
        user: 'username' in c ? c.username : undefined,
      };
}

/** Authenticates callers of one route; verifier failures surface as 503 TetherErrors. */
export class RouteAuthenticator {
  readonly challenge: string | undefined;

  constructor(
    private readonly cfg: RouteAuthConfig,
    private readonly verifier:
      | (Verifier & {
          clear?(): void;
          peek?(key: string): Verdict | undefined;
          check?(c: CallerCredential, key?: string): Verdict | Promise<Verdict>;
        })
      | undefined,
    defaultRealm: string,
  ) {
    const realm = cfg.realm ?? defaultRealm;
    this.challenge =
      cfg.type === 'none'
        ? undefined
        : cfg.type === 'bearer'
          ? `Bearer realm="${realm}"`
          : `Basic realm="${realm}"`;
  }

  /** Drops cached answers (a group key rotated, a tenant changed). */
  forget(): void {
    this.verifier?.clear?.();
  }

  get type(): RouteAuthConfig['type'] {
    return this.cfg.type;
  }

  /** The credential a caller must present for this route, from its Authorization header. */
  credential(header: string | undefined): CallerCredential | { missing: string } | { wrong: string } {
    const p = parseAuthorization(header);
    if (p === undefined) return { missing: 'authentication required' };
    if (p === 'malformed') return { wrong: 'the Authorization header is malformed' };
    switch (this.cfg.type) {
      case 'basic-token':
        if (p.scheme !== 'basic') return { missing: 'use Basic authentication: your e-mail and API token' };
        if (p.username === '' || p.password === '')
          return { wrong: 'both the e-mail and the API token are required' };
        return { username: p.username, token: p.password };
      case 'bearer':
        if (p.scheme !== 'bearer') return { missing: 'use a Bearer token' };
        return { token: p.token };
      default:
        if (p.scheme === 'basic') {
          if (p.password === '') return { wrong: 'the group key is required' };
          return { username: p.username, token: p.password };
        }
        if (p.scheme === 'bearer') return { token: p.token };
        return { missing: 'use Basic authentication: the tenant id and the group key' };
    }
  }

  async authenticate(header: string | undefined): Promise<AuthOutcome> {
    return this.check(header);
  }

  /** Like `authenticate`, but answers at once (no promise) when the verdict is cached. */
  check(header: string | undefined): AuthOutcome | Promise<AuthOutcome> {
    if (this.cfg.type === 'none' || !this.verifier) return { ok: true, subject: null, scopes: null };
    // Cached answers are found by a digest of the whole header: a hit needs no decoding.
    const key = header && this.verifier.peek ? hash('sha256', header, 'base64') : undefined;
    const hit = key === undefined ? undefined : this.verifier.peek!(key);
    if (hit)
      return hit.ok
        ? { ok: true, subject: hit.subject, scopes: hit.scopes }
        : outcome(hit, this.credential(header));
    const c = this.credential(header);
    if ('missing' in c) return { ok: false, message: c.missing, presented: false };
    if ('wrong' in c) return { ok: false, message: c.wrong, presented: true };
    const v = this.verifier.check ? this.verifier.check(c, key) : this.verifier.verify(c);
    return v instanceof Promise ? v.then((x) => outcome(x, c)) : outcome(v, c);
  }
}
