import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type AdminOidcConfig, CALLBACK_PATH, isLoopbackHost } from '../config/admin-oidc.js';
import type { Clock } from '../core/clock.js';
import { RefusalLog } from '../core/refusals.js';
import { errors, TetherError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import { type Claims, decide, OidcClient, type PendingLogin, Sealer } from './oidc.js';
import { sendPage } from './oidc-pages.js';
import { cookieValue, SessionAuth, sendJson, type Verdict } from './session-auth.js';
import { SessionStore } from './session-store.js';

/**
 * Dashboard single sign-on: `/auth/login` sends the browser to the provider, `/auth/callback`
 * finishes the sign-in and sets the session cookie, `/auth/session` tells the page who is signed
 * in (with the CSRF token its changes must carry), `/auth/logout` ends the session. API requests
 * with the cookie go through `authorize` (session-auth.ts).
 */

export interface DashboardSsoDeps {
  log: Logger;
  clock: Clock;
  /** Counts refusals (`bound.refused`); one is made from log and clock when not given. */
  refusals?: RefusalLog;
}

export class DashboardSso {
  readonly store: SessionStore;
  readonly auth: SessionAuth;
  private readonly sealer = new Sealer();
  private readonly refusals: RefusalLog;
  private readonly log: Logger;
  private readonly secure: boolean;
  private readonly loginCookie: string;
  private redirectUri: string | null;
  private oidc: OidcClient | null = null;

  constructor(
    private readonly cfg: AdminOidcConfig,
    private readonly deps: DashboardSsoDeps,
  ) {
    this.log = deps.log.child({ component: 'dashboard-sso' });
    this.refusals = deps.refusals ?? new RefusalLog(this.log, deps.clock);
    this.redirectUri = cfg.redirect_uri ?? null;
    // Without a redirect_uri the admin listener is on loopback (the config checks it): plain http.
    this.secure = cfg.redirect_uri ? new URL(cfg.redirect_uri).protocol === 'https:' : false;
    this.loginCookie = this.secure ? '__Host-tether_login' : 'tether_login';
    this.store = new SessionStore(deps.clock, {
      idleMs: cfg.session.idle_timeout,
      lifetimeMs: cfg.session.lifetime,
      maxSessions: cfg.session.max_sessions,
      maxPerUser: cfg.session.max_per_user,
    });
    this.auth = new SessionAuth({
      store: this.store,
      secure: this.secure,
      origin: () => new URL(this.callbackUri()).origin,
      refusals: this.refusals,
      log: this.log,
    });
  }

  /** The admin listener is up: a redirect URI not configured is derived from its address. */
  listening(addr: AddressInfo): void {
    if (!this.redirectUri) {
      const host = addr.address.includes(':') ? `[${addr.address}]` : addr.address;
      if (!isLoopbackHost(addr.address)) throw new Error('admin.oidc.redirect_uri is needed off loopback');
      this.redirectUri = `http://${host}:${addr.port}${CALLBACK_PATH}`;
    }
    // The redirect URI to register at the provider (derived ones are known only now).
    this.log.info(
      { event: 'dashboard.sso_ready', issuer: this.cfg.issuer, redirect_uri: this.redirectUri },
      `dashboard single sign-on with ${this.cfg.issuer}; redirect URI ${this.redirectUri}`,
    );
  }

  callbackUri(): string {
    if (!this.redirectUri) throw new Error('the admin listener is not up yet');
    return this.redirectUri;
  }

  private client(): OidcClient {
    this.oidc ??= new OidcClient(this.cfg, this.callbackUri(), this.deps.clock);
    return this.oidc;
  }

  close(): void {
    this.store.close();
  }

  authorize(req: http.IncomingMessage, res: http.ServerResponse, path: string): Verdict {
    return this.auth.authorize(req, res, path);
  }

  /**
   * The event stream for a live session (false without one): it ends when the session does
   * (sign-out, expiry), so an open tab does not keep showing data past its session.
   */
  async serveEvents(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    serve: () => Promise<void>,
  ): Promise<boolean> {
    const id = this.auth.sessionId(req);
    if (!id || !this.store.use(id)) return false;
    const unwatch = this.store.watch(id, () => res.end());
    res.once('close', unwatch);
    await serve();
    return true;
  }

  /** The sign-in routes; false for any other path. */
  async routes(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<boolean> {
    const path = url.pathname;
    if (!path.startsWith('/auth/')) return false;
    const m = req.method ?? 'GET';
    if (path === '/auth/login' && (m === 'GET' || m === 'HEAD')) await this.login(req, res, url);
    else if (path === CALLBACK_PATH && m === 'GET') await this.callback(req, res, url);
    else if (path === '/auth/session' && m === 'GET') this.session(req, res);
    else if (path === '/auth/logout' && m === 'POST') this.logout(req, res);
    else return false;
    return true;
  }

  private async login(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    // The pending-sign-in cookie must be set on the host the provider sends the browser back to
    // (http://localhost:7070 and http://127.0.0.1:7070 keep separate cookies): start there. Only
    // for a plain-http loopback dashboard (behind a TLS proxy the Host header may be rewritten),
    // and once (`moved`), so a proxy that rewrites it anyway cannot make a loop.
    const home = new URL(this.callbackUri());
    if (!this.secure && req.headers.host !== home.host && !url.searchParams.has('moved')) {
      const again = url.searchParams.get('again') === '1' ? '&again=1' : '';
      res.writeHead(303, {
        location: `${home.origin}/auth/login?moved=1${again}`,
        'cache-control': 'no-store',
      });
      res.end();
      return;
    }
    let started: { url: URL; pending: PendingLogin };
    try {
      started = await this.client().start();
    } catch (err) {
      this.log.warn(
        { event: 'dashboard.sso_failed', err, issuer: this.cfg.issuer },
        'identity provider unreachable',
      );
      sendPage(
        res,
        new TetherError(
          'SSO_FAILED',
          `The identity provider (${this.cfg.issuer}) cannot be reached or answered something this gateway does not accept. The gateway log has the detail.`,
        ),
        'Sign-in unavailable',
      );
      return;
    }
    // "Sign in as someone else" asks the provider to show its login form again.
    if (url.searchParams.get('again') === '1') started.url.searchParams.set('prompt', 'login');
    const life = Math.ceil(this.cfg.login_timeout / 1000);
    res.writeHead(303, {
      location: started.url.href,
      'cache-control': 'no-store',
      // Lax, not Strict: the provider's redirect back is a cross-site navigation.
      'set-cookie': `${this.loginCookie}=${this.sealer.seal(started.pending)}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${life}${this.secure ? '; Secure' : ''}`,
    });
    res.end();
  }

  private clearLogin(): string {
    return `${this.loginCookie}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0${this.secure ? '; Secure' : ''}`;
  }

  private async callback(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const clear = { 'set-cookie': this.clearLogin() };
    const source = req.socket.remoteAddress ?? '';
    const p = this.sealer.unseal(cookieValue(req.headers.cookie, this.loginCookie)) as
      | PendingLogin
      | undefined;
    const stale =
      !p || typeof p.state !== 'string' || typeof p.exp !== 'number' || p.exp <= this.deps.clock.now();
    const providerError = url.searchParams.get('error');
    if (stale || url.searchParams.has('error')) {
      const why = stale
        ? 'no pending sign-in (stale, another browser or tab, or not started here)'
        : 'provider error';
      this.refusals.refuse(
        'sso_bad_callback',
        source,
        { source, why, error: providerError?.slice(0, 100) },
        `dashboard sign-in callback refused: ${why}`,
      );
    }
    if (providerError) {
      const desc = url.searchParams.get('error_description');
      sendPage(
        res,
        new TetherError(
          'SSO_FAILED',
          `The identity provider did not sign you in: ${providerError.slice(0, 100)}${desc ? ` (${desc.slice(0, 300)})` : ''}.`,
          { status: 403 },
        ),
        'Not signed in',
        [],
        clear,
        { href: '/auth/login', text: 'Try again' },
      );
      return;
    }
    if (stale) {
      sendPage(
        res,
        errors.badRequest(
          'This sign-in cannot be finished: it was started too long ago, in another tab or browser, or not on this gateway.',
        ),
        'Sign-in expired',
        ['Start again from the dashboard.'],
        clear,
      );
      return;
    }
    let claims: Claims;
    try {
      claims = await this.client().finish(url.searchParams, p);
    } catch (err) {
      // fetch failures (refused, reset, timed out) are TypeErrors or DOMExceptions; the rest is a bad answer.
      const unreachable = err instanceof TypeError || (err as Error)?.name === 'TimeoutError';
      this.refusals.refuse(
        'sso_bad_callback',
        source,
        { source, why: String((err as Error).message).slice(0, 200) },
        'dashboard sign-in callback refused: the code exchange failed',
      );
      this.log.warn({ event: 'dashboard.sso_failed', err }, 'sign-in callback failed');
      sendPage(
        res,
        unreachable
          ? new TetherError(
              'SSO_FAILED',
              'The identity provider cannot be reached. The gateway log has the detail.',
            )
          : new TetherError(
              'SSO_FAILED',
              'The identity provider’s answer could not be verified (state, nonce, PKCE or ID token). The gateway log has the detail.',
              { status: 403 },
            ),
        'Sign-in failed',
        ['Start again from the dashboard.'],
        clear,
      );
      return;
    }
    const d = decide(this.cfg, claims);
    const who = d.user.email ?? d.user.subject;
    if (!d.ok) {
      this.refusals.refuse(
        'sso_not_allowed',
        d.user.subject,
        { user: who, subject: d.user.subject, groups: d.user.groups.slice(0, 20), why: d.why, source },
        `dashboard sign-in refused: ${who} is ${d.why}`,
      );
      sendPage(
        res,
        new TetherError(
          'SSO_NOT_ALLOWED',
          `The identity provider signed you in as ${who}, but this gateway does not let that account use the dashboard (${d.why}).`,
        ),
        'Access refused',
        [
          'Ask the gateway’s operator to add you to a group or email list of admin.oidc, or sign in as someone else.',
        ],
        clear,
        { href: '/auth/login?again=1', text: 'Sign in as someone else' },
      );
      return;
    }
    const r = this.store.create(d.user);
    if (!r.ok) {
      this.refusals.refuse(
        'dashboard_sessions',
        '*',
        { user: who, max: this.cfg.session.max_sessions },
        'dashboard sign-in refused: too many sessions',
      );
      sendPage(
        res,
        new TetherError(
          'SSO_SESSIONS_FULL',
          `The dashboard has ${this.cfg.session.max_sessions} sessions open (admin.oidc.session.max_sessions). Try again later.`,
        ),
        'Too many sessions',
        [],
        clear,
      );
      return;
    }
    this.log.info(
      {
        event: 'dashboard.sign_in',
        user: who,
        subject: d.user.subject,
        role: d.user.role,
        source,
        evicted: r.evicted,
      },
      `dashboard sign-in: ${who} as ${d.user.role}`,
    );
    res.writeHead(303, {
      location: '/',
      'cache-control': 'no-store',
      'set-cookie': [this.auth.setCookie(r.id), this.clearLogin()],
    });
    res.end();
  }

  /**
   * Who is signed in (the page asks on load): always 200, so that a signed-out page logs no
   * failed request; `ended` when the cookie named a session that is over.
   */
  private session(req: http.IncomingMessage, res: http.ServerResponse): void {
    const id = this.auth.sessionId(req);
    const s = this.store.use(id);
    if (!s) {
      sendJson(
        res,
        200,
        { signed_in: false, ended: id !== undefined, sso: { login: '/auth/login' } },
        id ? { 'set-cookie': this.auth.clearCookie() } : {},
      );
      return;
    }
    const u = s.user;
    sendJson(res, 200, {
      signed_in: true,
      user: { subject: u.subject, email: u.email, name: u.name, role: u.role },
      csrf_token: s.csrf,
      expires_at: new Date(this.store.expiresAt(s)).toISOString(),
      sso: { login: '/auth/login' },
    });
  }

  /** Sign-out: protected like every change (a cross-site page must not sign you out either). */
  private logout(req: http.IncomingMessage, res: http.ServerResponse): void {
    const id = this.auth.sessionId(req);
    const s = this.store.peek(id);
    if (s && this.auth.refuseCrossSite(req, res, s, '/auth/logout')) return;
    this.store.delete(id);
    if (s)
      this.log.info(
        { event: 'dashboard.sign_out', user: s.user.email ?? s.user.subject },
        'dashboard sign-out',
      );
    res.writeHead(204, { 'set-cookie': this.auth.clearCookie(), 'cache-control': 'no-store' });
    res.end();
  }
}
