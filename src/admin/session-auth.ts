import type http from 'node:http';
import type { RefusalLog } from '../core/refusals.js';
import { TetherError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import { sameSecret } from './router.js';
import type { Session, SessionStore } from './session-store.js';

/**
 * Admin API requests authenticated by a dashboard session cookie (the bearer token needs none of
 * this): the session must be live; a change (any method but GET/HEAD/OPTIONS) must come from the
 * dashboard's own origin (Sec-Fetch-Site, else Origin) AND carry the session's CSRF token in
 * `X-CSRF-Token`; the `viewer` role may change nothing and may not read group keys.
 */

/** `pass`: go on as if the token was given; `answered`: a refusal was sent; `none`: no session cookie. */
export type Verdict = 'pass' | 'answered' | 'none';

export const CSRF_HEADER = 'x-csrf-token';

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Reads are fine for viewers, except what hands out secrets (group keys open front doors). */
const SECRET_READS = [/^\/v1\/tenants\/[^/]+\/repositories$/];

export function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

export function sendJson(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: http.OutgoingHttpHeaders = {},
) {
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(`${JSON.stringify(body, null, 2)}\n`);
}

/** An error answer: the error's catalog status and its JSON. */
export function sendError(
  res: http.ServerResponse,
  err: TetherError,
  headers: http.OutgoingHttpHeaders = {},
) {
  sendJson(res, err.status, err.toJSON(), headers);
}

export const sessionEnded = () =>
  new TetherError(
    'DASHBOARD_SESSION_ENDED',
    'your dashboard session has ended (expired or signed out): sign in again',
  );

export interface SessionAuthOptions {
  store: SessionStore;
  /** Cookies with `Secure` (and the `__Host-` prefix): off only for a plain-http loopback dashboard. */
  secure: boolean;
  /** The dashboard's origin as the browser sees it (from the redirect URI). */
  origin: () => string;
  refusals: RefusalLog;
  log: Logger;
}

export class SessionAuth {
  readonly cookie: string;

  constructor(private readonly o: SessionAuthOptions) {
    this.cookie = o.secure ? '__Host-tether_session' : 'tether_session';
  }

  get store(): SessionStore {
    return this.o.store;
  }

  sessionId(req: http.IncomingMessage): string | undefined {
    return cookieValue(req.headers.cookie, this.cookie);
  }

  /** A browser-session cookie (no Max-Age): the server decides when it ends, and says so (401). */
  setCookie(id: string): string {
    return `${this.cookie}=${id}; Path=/; HttpOnly; SameSite=Strict${this.o.secure ? '; Secure' : ''}`;
  }

  clearCookie(): string {
    return `${this.cookie}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0${this.o.secure ? '; Secure' : ''}`;
  }

  /**
   * Why a state-changing request is not from the dashboard's own pages, or null. Browsers send
   * Sec-Fetch-Site (only "same-origin" passes: a sibling port or subdomain is "same-site", and
   * SameSite cookies reach it); older ones send Origin, which must be ours.
   */
  crossSite(req: http.IncomingMessage): string | null {
    const site = req.headers['sec-fetch-site'];
    if (typeof site === 'string') {
      return site === 'same-origin' ? null : `Sec-Fetch-Site is ${JSON.stringify(site.slice(0, 40))}`;
    }
    const origin = req.headers.origin;
    if (typeof origin !== 'string') return 'the request has neither Sec-Fetch-Site nor Origin';
    if (origin === this.o.origin()) return null;
    // Behind a proxy that keeps the Host header, the browser's origin is that host.
    const host = req.headers.host;
    try {
      if (host && new URL(origin).host === host) return null;
    } catch {
      // not a URL: refused below
    }
    return `Origin ${JSON.stringify(origin.slice(0, 200))} is not this dashboard`;
  }

  /** The admin API's check for a request without a valid bearer token. */
  authorize(req: http.IncomingMessage, res: http.ServerResponse, path: string): Verdict {
    const id = this.sessionId(req);
    if (!id) return 'none';
    const session = this.o.store.peek(id);
    if (!session) {
      sendError(res, sessionEnded(), { 'set-cookie': this.clearCookie() });
      return 'answered';
    }
    const method = req.method ?? 'GET';
    if (!SAFE.has(method) && this.refuseCrossSite(req, res, session, path)) return 'answered';
    const secretRead = SECRET_READS.some((re) => re.test(path));
    if (session.user.role !== 'admin' && (!SAFE.has(method) || secretRead)) {
      const who = session.user.email ?? session.user.subject;
      this.o.log.info(
        { event: 'dashboard.read_only', user: who, method, path },
        'viewer role: change refused',
      );
      sendError(
        res,
        new TetherError(
          'READ_ONLY_ROLE',
          secretRead
            ? `${who} has the viewer role: group keys are not shown to viewers`
            : `${who} has the viewer role on this dashboard: changes are refused`,
        ),
      );
      return 'answered';
    }
    this.o.store.use(id);
    return 'pass';
  }

  /**
   * For a change with a live session: refuses it (403, counted as `cross_site_request`) unless it
   * comes from the dashboard's own origin with the session's CSRF token. True when refused.
   */
  refuseCrossSite(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    session: Session,
    path: string,
  ): boolean {
    const why = this.crossSite(req) ?? this.csrfProblem(req, session);
    if (!why) return false;
    this.o.refusals.refuse(
      'cross_site_request',
      session.user.subject,
      { user: session.user.email ?? session.user.subject, method: req.method, path, why },
      'dashboard change refused: not from the dashboard itself',
    );
    sendError(
      res,
      new TetherError('CROSS_SITE_REFUSED', `refused: ${why} (changes must come from the dashboard page)`),
    );
    return true;
  }

  private csrfProblem(req: http.IncomingMessage, session: Session): string | null {
    const given = req.headers[CSRF_HEADER];
    if (typeof given !== 'string' || given === '') return 'no X-CSRF-Token header';
    return sameSecret(session.csrf, given) ? null : 'wrong X-CSRF-Token';
  }
}
