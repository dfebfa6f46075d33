import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { TetherError } from '../errors/index.js';

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

/** Calls the admin API; error bodies become TetherErrors with the server's message. */
export async function adminRequest<T>(
  target: AdminTarget,
  method: string,
  path: string,
  body?: unknown,
): Promise<T> {
  let res: Response;
  try {
    res = await fetch(`${target.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${target.token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
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
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!res.ok) {
    const err = (
      json as
        | { error?: { code?: string; message?: string; details?: Array<{ path: string; message: string }> } }
        | undefined
    )?.error;
    throw new TetherError(
      err?.code ?? `HTTP_${res.status}`,
      err?.message ?? `admin API answered ${res.status}`,
      {
        status: res.status,
        details: err?.details,
      },
    );
  }
  return json as T;
}
