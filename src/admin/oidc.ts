import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import * as client from 'openid-client';
import type { AdminOidcConfig } from '../config/admin-oidc.js';
import type { Clock } from '../core/clock.js';
import type { Role, SessionUser } from './session-store.js';

/**
 * The OpenID Connect relying party of the dashboard, on `openid-client`: discovery (lazy, retried
 * on the next sign-in when the provider was down), the authorization request with PKCE (S256),
 * state and nonce, and the code exchange, which checks all three and the ID token. Which users
 * may sign in, and with which role, is decided by `decide` from the provider's claims.
 */

/** What a started sign-in must find again on the callback (kept sealed in a cookie, not in memory). */
export interface PendingLogin {
  state: string;
  nonce: string;
  verifier: string;
  /** Expiry, epoch ms. */
  exp: number;
}

/** Claims from the ID token and userinfo (userinfo wins; both checked to be about the same `sub`). */
export type Claims = Record<string, unknown> & { sub: string };

/** How long one request to the provider may take. */
const PROVIDER_TIMEOUT_MS = 10_000;

/**
 * Seals pending sign-ins with AES-256-GCM under a key made at start: a browser can carry its own
 * state, nonce and PKCE verifier without the gateway holding anything for visitors who never come
 * back, and nobody can read or forge them.
 */
export class Sealer {
  private readonly key = randomBytes(32);

  seal(value: unknown): string {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.key, iv);
    const body = Buffer.concat([c.update(JSON.stringify(value), 'utf8'), c.final()]);
    return Buffer.concat([iv, c.getAuthTag(), body]).toString('base64url');
  }

  unseal(text: string | undefined): unknown {
    if (!text || text.length > 4096) return undefined;
    try {
      const raw = Buffer.from(text, 'base64url');
      if (raw.length < 29) return undefined;
      const d = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, 12));
      d.setAuthTag(raw.subarray(12, 28));
      return JSON.parse(Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString('utf8'));
    } catch {
      return undefined;
    }
  }
}

export class OidcClient {
  private config: Promise<client.Configuration> | null = null;

  constructor(
    private readonly cfg: AdminOidcConfig,
    readonly redirectUri: string,
    private readonly clock: Clock,
  ) {}

  /** The provider's metadata, fetched once; a failed discovery is tried again next time. */
  private discover(): Promise<client.Configuration> {
    if (this.config) return this.config;
    const c = this.cfg;
    const method = c.token_endpoint_auth_method ?? (c.client_secret ? 'client_secret_basic' : 'none');
    const auth =
      method === 'none'
        ? client.None()
        : method === 'client_secret_post'
          ? client.ClientSecretPost(c.client_secret)
          : client.ClientSecretBasic(c.client_secret);
    const insecure = new URL(c.issuer).protocol === 'http:'; // only a loopback issuer (config checks it)
    const p = client.discovery(
      new URL(c.issuer),
      c.client_id,
      { redirect_uris: [this.redirectUri], response_types: ['code'] },
      auth,
      {
        [client.customFetch]: (url, options) =>
          fetch(url, { ...options, signal: AbortSignal.timeout(PROVIDER_TIMEOUT_MS) } as RequestInit),
        ...(insecure ? { execute: [client.allowInsecureRequests] } : {}),
      },
    );
    this.config = p;
    p.catch(() => {
      if (this.config === p) this.config = null;
    });
    return p;
  }

  /** Starts a sign-in: the provider's authorization URL and what the callback must check. */
  async start(): Promise<{ url: URL; pending: PendingLogin }> {
    const config = await this.discover();
    const pending: PendingLogin = {
      state: client.randomState(),
      nonce: client.randomNonce(),
      verifier: client.randomPKCECodeVerifier(),
      exp: this.clock.now() + this.cfg.login_timeout,
    };
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: this.redirectUri,
      scope: this.cfg.scopes.join(' '),
      response_type: 'code',
      code_challenge: await client.calculatePKCECodeChallenge(pending.verifier),
      code_challenge_method: 'S256',
      state: pending.state,
      nonce: pending.nonce,
    });
    return { url, pending };
  }

  /**
   * Finishes a sign-in from the callback's query: exchanges the code (checking state, nonce, the
   * PKCE verifier, the ID token's issuer, audience, signature and times), then reads userinfo.
   */
  async finish(query: URLSearchParams, pending: PendingLogin): Promise<Claims> {
    const config = await this.discover();
    const current = new URL(this.redirectUri);
    current.search = query.toString();
    const tokens = await client.authorizationCodeGrant(config, current, {
      pkceCodeVerifier: pending.verifier,
      expectedState: pending.state,
      expectedNonce: pending.nonce,
      idTokenExpected: true,
    });
    const id = tokens.claims();
    if (!id) throw new Error('the provider returned no ID token');
    let info: Record<string, unknown> = {};
    if (config.serverMetadata().userinfo_endpoint) {
      info = await client.fetchUserInfo(config, tokens.access_token, id.sub);
    }
    return { ...(id as Record<string, unknown>), ...info, sub: id.sub };
  }
}

/** The groups a claim value names: a list of strings, or one string. At most 1000 are looked at. */
function groupsOf(v: unknown): string[] {
  const list = Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
  return list.filter((g): g is string => typeof g === 'string' && g.length <= 256).slice(0, 1000);
}

const short = (v: unknown, max = 256): string | null =>
  typeof v === 'string' && v.length > 0 ? v.slice(0, max) : null;

/** A sign-in decision: the user with a role, or why they are refused (for the log and the page). */
export type Decision =
  | { ok: true; user: SessionUser }
  | { ok: false; why: string; user: Omit<SessionUser, 'role'> };

/** Who may sign in and as what, from the provider's claims and `admin.oidc`. */
export function decide(cfg: AdminOidcConfig, claims: Claims): Decision {
  const groups = groupsOf(claims[cfg.groups_claim]);
  const rawEmail = short(claims.email, 320)?.toLowerCase() ?? null;
  const verified = claims.email_verified === true || claims.email_verified === 'true';
  // An address the provider did not verify must not match an email list (anyone could claim it).
  const email = rawEmail && (verified || !cfg.require_verified_email) ? rawEmail : null;
  const base = { subject: claims.sub.slice(0, 256), email: rawEmail, name: short(claims.name), groups };
  const names = (w: { groups: string[]; emails: string[] }) =>
    groups.some((g) => w.groups.includes(g)) || (email !== null && w.emails.includes(email));
  const unverified = rawEmail !== null && email === null ? ' (its email is not verified)' : '';
  const gate = { groups: cfg.allowed_groups, emails: cfg.allowed_emails.map((e) => e.toLowerCase()) };
  if (gate.groups.length + gate.emails.length > 0 && !names(gate)) {
    return { ok: false, why: `not in allowed_groups or allowed_emails${unverified}`, user: base };
  }
  const role: Role | null = names(cfg.roles.admin) ? 'admin' : names(cfg.roles.viewer) ? 'viewer' : null;
  if (!role) return { ok: false, why: `no role names this user${unverified}`, user: base };
  return { ok: true, user: { ...base, role } };
}
