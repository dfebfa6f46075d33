import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type http from 'node:http';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LiveEvents, type LiveEventsDeps } from '../events.js';
import type { DashboardSso } from '../oidc-routes.js';
import { sameSecret } from '../router.js';

/**
 * The web dashboard, served by the admin listener: static files (plain web components, no
 * build step, nothing fetched from elsewhere) at `/` and `/dashboard/…`, and the event stream.
 * The page calls the JSON admin API with the admin token (kept in sessionStorage). EventSource
 * cannot send headers, so signing in also sets a cookie that opens `/v1/events` and nothing else.
 */
export interface DashboardDeps extends LiveEventsDeps {
  token: string;
  /** Single sign-on: a live session opens the event stream too (until the session ends). */
  sso?: DashboardSso;
  /** Where the static files are (default: next to this module, or the source tree). */
  staticDir?: string;
}

export type ExtraRoutes = ((
  req: http.IncomingMessage,
  res: http.ServerResponse,
  url: URL,
) => Promise<boolean>) & { close(): void };

const COOKIE = 'tether_events';
const COOKIE_PATH = '/v1/events';
const SESSION_TTL_MS = 12 * 3_600_000;
const MAX_SESSIONS = 200;

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

/**
 * The static files: in a source checkout, src/ (so a plain `tsc` build never serves a stale
 * copy); in a package, the copy `npm run build` puts next to the compiled module.
 */
function findStaticDir(): string {
  const candidates = [
    fileURLToPath(new URL('../../../src/admin/dashboard/static/', import.meta.url)),
    fileURLToPath(new URL('./static/', import.meta.url)),
  ];
  const dir = candidates.find((d) => existsSync(`${d}index.html`));
  if (!dir) throw new Error(`dashboard files not found (looked in ${candidates.join(', ')})`);
  return dir;
}

/**
 * The units module the gateway and the CLI use (src/core/units.js, plain JavaScript), served as
 * /dashboard/units.js so that the page formats bytes and rates exactly as they do.
 */
const UNITS_MODULE = new URL('../../core/units.js', import.meta.url);

function loadFiles(dir: string): Map<string, { body: Buffer; type: string }> {
  const files = new Map<string, { body: Buffer; type: string }>();
  for (const name of readdirSync(dir)) {
    const type = TYPES[extname(name)];
    if (type) files.set(name, { body: readFileSync(`${dir.replace(/\/?$/, '/')}${name}`), type });
  }
  files.set('units.js', { body: readFileSync(UNITS_MODULE), type: TYPES['.js']! });
  return files;
}

function bearerMatches(expected: string, header: string | undefined): boolean {
  if (!header?.startsWith('Bearer ')) return false;
  return sameSecret(expected, header.slice(7).trim());
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

function json(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(`${JSON.stringify(body)}\n`);
}

const unauthorized = (message: string) => ({ error: { code: 'UNAUTHORIZED', message } });

/** Routes for AdminServer's `extra` hook: the dashboard and its event stream. */
export function dashboardRoutes(deps: DashboardDeps): ExtraRoutes {
  const files = loadFiles(deps.staticDir ?? findStaticDir());
  const live = new LiveEvents(deps);
  /** Event-stream sessions: cookie value → expiry. */
  const sessions = new Map<string, number>();

  const validSession = (id: string | undefined): boolean => {
    if (!id) return false;
    const now = Date.now();
    for (const [k, exp] of sessions) if (exp <= now) sessions.delete(k);
    for (const k of sessions.keys()) if (sameSecret(k, id)) return true;
    return false;
  };

  const routes = async (req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<boolean> => {
    const path = url.pathname;
    if (path === COOKIE_PATH) {
      if (req.method !== 'GET') return false;
      if (deps.sso && (await deps.sso.serveEvents(req, res, () => live.serve(req, res)))) return true;
      if (!validSession(cookieValue(req.headers.cookie, COOKIE))) {
        json(
          res,
          401,
          unauthorized('sign in to the dashboard first (POST /v1/events/session with the admin token)'),
        );
        return true;
      }
      await live.serve(req, res);
      return true;
    }
    if (path === `${COOKIE_PATH}/session`) {
      if (req.method !== 'POST' && req.method !== 'DELETE') return false;
      if (!bearerMatches(deps.token, req.headers.authorization)) {
        res.setHeader('www-authenticate', 'Bearer realm="tether-admin"');
        json(res, 401, unauthorized('missing or wrong admin token'));
        return true;
      }
      if (req.method === 'DELETE') {
        const id = cookieValue(req.headers.cookie, COOKIE);
        if (id) sessions.delete(id);
        res.writeHead(204, {
          'set-cookie': `${COOKIE}=; Path=${COOKIE_PATH}; HttpOnly; SameSite=Strict; Max-Age=0`,
        });
        res.end();
        return true;
      }
      const id = randomBytes(32).toString('base64url');
      sessions.set(id, Date.now() + SESSION_TTL_MS);
      while (sessions.size > MAX_SESSIONS) sessions.delete(sessions.keys().next().value!);
      res.writeHead(204, {
        'cache-control': 'no-store',
        'set-cookie': `${COOKIE}=${id}; Path=${COOKIE_PATH}; HttpOnly; SameSite=Strict; Max-Age=${SESSION_TTL_MS / 1000}`,
      });
      res.end();
      return true;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    // The page asks who is signed in by single sign-on; without it, nobody (200: no failed request).
    if (path === '/auth/session' && !deps.sso) {
      json(res, 200, { signed_in: false, sso: null });
      return true;
    }
    const name = path === '/' || path === '/index.html' ? 'index.html' : path.replace(/^\/dashboard\//, '');
    if (name === path) return false;
    const f = files.get(name);
    if (!f) return false;
    res.writeHead(200, {
      'content-type': f.type,
      'content-length': f.body.length,
      'cache-control': 'no-cache',
      ...SECURITY_HEADERS,
    });
    res.end(req.method === 'HEAD' ? undefined : f.body);
    return true;
  };
  return Object.assign(routes, { close: () => live.close() });
}
