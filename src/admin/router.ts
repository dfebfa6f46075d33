/**
 * The admin API's router: a table of routes (method, path template with {params}, whether the
 * token is needed, handler), matched in order; 405 when only the method is wrong, 404 when no
 * path matches. JSON bodies are size-capped and validated with the route's zod schema.
 */
import { timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import type { z } from 'zod';
import { zodProblems } from '../config/load.js';
import { errors, isTetherError, TetherError } from '../errors/index.js';
import type { RouteDoc } from './openapi.js';

const MAX_BODY = 64 * 1024;

export type Handler = (ctx: {
  req: http.IncomingMessage;
  params: string[];
  body: () => Promise<unknown>;
}) => Promise<[number, unknown]>;

/** A non-JSON answer (Prometheus text, the OpenAPI document as served). */
export class RawAnswer {
  constructor(
    readonly contentType: string,
    readonly body: string,
  ) {}
}

/** One admin route: its documentation (schemas, examples; see openapi.ts) and its handler. */
export interface Route extends RouteDoc {
  handler: Handler;
}

/** `/v1/tenants/{id}` → /^\/v1\/tenants\/([^/]+)$/ */
function pathPattern(template: string): RegExp {
  const parts = template.split(/\{[^}]+\}/).map((p) => p.replace(/[.*+?^$()|[\]\\/]/g, '\\$&'));
  return new RegExp(`^${parts.join('([^/]+)')}$`);
}

export function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`${text}\n`);
}

/**
 * Reads a JSON body of at most MAX_BODY bytes. A larger one is read to its end and thrown
 * away (only token holders get here; requestTimeout bounds it), so the client gets the 413
 * instead of a reset connection.
 */
function readBody(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) chunks.length = 0;
      else chunks.push(c);
    });
    req.on('end', () => {
      if (size > MAX_BODY) {
        reject(new TetherError('BODY_TOO_LARGE', `request body over ${MAX_BODY} bytes`, { status: 413 }));
        return;
      }
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') return resolve(undefined);
      try {
        resolve(JSON.parse(text));
      } catch {
        reject(errors.badRequest('request body is not valid JSON'));
      }
    });
    req.on('error', reject);
  });
}

export function parseBody<S extends z.ZodType>(schema: S, raw: unknown): z.output<S> {
  const r = schema.safeParse(raw);
  if (!r.success) {
    const details = zodProblems(r.error);
    throw errors.badRequest(
      `invalid request body: ${details.map((d) => (d.path ? `${d.path}: ${d.message}` : d.message)).join('; ')}`,
      details,
    );
  }
  return r.data;
}

export function tokenMatches(expected: string, header: string | undefined): boolean {
  if (!header?.startsWith('Bearer ')) return false;
  return sameSecret(expected, header.slice(7).trim());
}

/** Compares a secret in constant time (a length mismatch costs the same as a compare). */
export function sameSecret(expected: string, given: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  if (a.length !== b.length) {
    timingSafeEqual(b, b);
    return false;
  }
  return timingSafeEqual(a, b);
}

/** What a request is: a route of the table (with its raw params), or which error it gets. */
export type Matched = { route: Route; params: string[] };
export type Match = Matched | 'method-not-allowed' | 'not-found';

/** The routes of the admin API, matched in order. */
export class RouteTable {
  private readonly routes: Array<Route & { pattern: RegExp }>;

  constructor(routes: Route[]) {
    this.routes = routes.map((r) => ({ ...r, pattern: pathPattern(r.path) }));
  }

  /** Every route's documentation (schemas, examples). */
  docs(): RouteDoc[] {
    return this.routes.map(({ handler: _h, pattern: _p, ...doc }) => doc);
  }

  /** The route that answers without the token, if `method path` is one. */
  open(method: string | undefined, path: string): Matched | undefined {
    const r = this.routes.find((x) => x.auth === false && x.method === method && x.pattern.test(path));
    return r ? { route: r, params: r.pattern.exec(path)!.slice(1) } : undefined;
  }

  match(method: string | undefined, path: string): Match {
    let methodMismatch = false;
    for (const r of this.routes) {
      if (!r.pattern.test(path)) continue;
      if (r.method !== method) {
        methodMismatch = true;
        continue;
      }
      return { route: r, params: r.pattern.exec(path)!.slice(1) };
    }
    return methodMismatch ? 'method-not-allowed' : 'not-found';
  }
}

/** Runs a matched route and writes its answer; a coded error becomes its JSON and status. */
export async function answer(m: Matched, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  try {
    const params = m.params.map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        throw errors.badRequest(`malformed percent-escape in the path: ${JSON.stringify(p.slice(0, 80))}`);
      }
    });
    const [status, body] = await m.route.handler({ req, params, body: () => readBody(req) });
    if (status === 204) {
      res.writeHead(204);
      res.end();
    } else if (body instanceof RawAnswer) {
      res.writeHead(status, { 'content-type': body.contentType });
      res.end(body.body);
    } else send(res, status, body);
  } catch (err) {
    if (isTetherError(err)) send(res, err.status, err.toJSON());
    else throw err;
  }
}
