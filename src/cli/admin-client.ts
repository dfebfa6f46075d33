import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join, resolve } from 'node:path';
import { TetherError, toErrorCode } from '../errors/index.js';

export interface AdminTarget {
  url: string;
  token: string;
}

/**
 * Finds the admin API: TETHER_ADMIN_URL / TETHER_ADMIN_TOKEN, else the data dir
 * (TETHER_DATA_DIR or ./.tether) where the running gateway wrote gateway.json and admin.token.
 */
export function findAdmin(env: NodeJS.ProcessEnv = process.env, dataDirOpt?: string): AdminTarget {
  const dataDir = resolve(dataDirOpt ?? env.TETHER_DATA_DIR ?? './.tether');
  let url = env.TETHER_ADMIN_URL;
  let token = env.TETHER_ADMIN_TOKEN;
  if (!url) {
    try {
      const info = JSON.parse(readFileSync(join(dataDir, 'gateway.json'), 'utf8')) as { admin_url?: string };
      url = info.admin_url;
    } catch {
      url = 'http://127.0.0.1:7070';
    }
  }
  if (!token) {
    try {
      token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
    } catch {
      throw new TetherError(
        'ADMIN_TOKEN_MISSING',
        `no admin token: set TETHER_ADMIN_TOKEN, or run this where the gateway's data dir is (${join(dataDir, 'admin.token')} not readable)`,
        { status: 401 },
      );
    }
  }
  return { url: (url ?? '').replace(/\/+$/, ''), token };
}

/**
 * One HTTP request with node:http(s), not fetch: fetch loads undici on first use, which costs
 * the CLI about a tenth of a second at every start (docs/performance.md, "CLI start").
 */
function send(
  url: string,
  method: string,
  token: string,
  body: unknown,
): Promise<{ status: number; text: string }> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolvePromise, reject) => {
    const u = new URL(url);
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(
      u,
      {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(payload === undefined
            ? {}
            : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
        },
        timeout: 15_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolvePromise({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer within 15 s')));
    req.on('error', reject);
    req.end(payload);
  });
}

/** Calls the admin API; error bodies become TetherErrors with the server's message. */
export async function adminRequest<T>(
  target: AdminTarget,
  method: string,
  path: string,
  body?: unknown,
): Promise<T> {
  let res: { status: number; text: string };
  try {
    res = await send(`${target.url}${path}`, method, target.token, body);
  } catch (e) {
    throw new TetherError(
      'ADMIN_UNREACHABLE',
      `cannot reach the gateway admin API at ${target.url} (is \`tether gateway\` running?)`,
      {
        status: 503,
        cause: e,
      },
    );
  }
  if (res.status === 204) return undefined as T;
  const text = res.text;
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (res.status < 200 || res.status > 299) {
    const err = (
      json as
        | { error?: { code?: string; message?: string; details?: Array<{ path: string; message: string }> } }
        | undefined
    )?.error;
    throw new TetherError(
      toErrorCode(err?.code, 'ADMIN_ERROR'),
      err?.message ?? `admin API answered ${res.status}`,
      {
        status: res.status,
        details: err?.details,
      },
    );
  }
  return json as T;
}
