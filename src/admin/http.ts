import { timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import type { z } from 'zod';
import { zodProblems } from '../config/load.js';
import { errors, TetherError } from '../errors/index.js';

/** Request plumbing of the admin API: path patterns, JSON answers and bodies, the bearer token. */

const MAX_BODY = 64 * 1024;

/** `/v1/tenants/{id}` → /^\/v1\/tenants\/([^/]+)$/ */
export function pathPattern(template: string): RegExp {
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
export function readBody(req: http.IncomingMessage): Promise<unknown> {
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
  const a = Buffer.from(header.slice(7).trim());
  const b = Buffer.from(expected);
  if (a.length !== b.length) {
    timingSafeEqual(b, b);
    return false;
  }
  return timingSafeEqual(a, b);
}
