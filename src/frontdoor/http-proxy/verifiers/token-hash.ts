import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

/**
 * Token hashes for the static verifier's file: `scrypt$N$r$p$<salt>$<hash>` (salt and hash
 * base64url, no padding). scrypt from node:crypto; the work runs on libuv's thread pool, so the
 * event loop never waits for it.
 */

export interface ScryptParams {
  N: number;
  r: number;
  p: number;
}

export const DEFAULT_SCRYPT: ScryptParams = { N: 16_384, r: 8, p: 1 };
const KEY_LEN = 32;
const SALT_LEN = 16;

export interface ParsedHash extends ScryptParams {
  salt: Buffer;
  hash: Buffer;
}

function isPow2(n: number): boolean {
  return Number.isInteger(n) && n > 1 && (n & (n - 1)) === 0;
}

/** Checks a hash string; returns why it is not usable, or the parts. */
export function parseTokenHash(text: string): ParsedHash | string {
  if (text.startsWith('$argon2'))
    return 'argon2 hashes are not supported by this Node version; use scrypt (tether http-proxy hash-token)';
  const parts = text.split('$');
  if (parts[0] !== 'scrypt' || parts.length !== 6)
    return 'not a scrypt hash (expected scrypt$N$r$p$salt$hash)';
  const [, n, r, p, salt, hash] = parts as [string, string, string, string, string, string];
  const N = Number(n);
  const R = Number(r);
  const P = Number(p);
  if (!isPow2(N) || N > 1_048_576) return 'N must be a power of two up to 1048576';
  if (!Number.isInteger(R) || R < 1 || R > 32) return 'r must be 1-32';
  if (!Number.isInteger(P) || P < 1 || P > 16) return 'p must be 1-16';
  const b64 = /^[A-Za-z0-9_-]+$/;
  if (!b64.test(salt) || !b64.test(hash)) return 'salt and hash must be base64url';
  const s = Buffer.from(salt, 'base64url');
  const h = Buffer.from(hash, 'base64url');
  if (s.length < 8) return 'the salt is too short (at least 8 bytes)';
  if (h.length < 16 || h.length > 64) return 'the hash must be 16-64 bytes';
  return { N, r: R, p: P, salt: s, hash: h };
}

function derive(token: string, salt: Buffer, params: ScryptParams, len: number): Promise<Buffer> {
  const maxmem = 128 * params.N * params.r * params.p + 1024 * 1024;
  return new Promise((resolve, reject) =>
    scrypt(token, salt, len, { N: params.N, r: params.r, p: params.p, maxmem }, (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  );
}

/** Hashes a token for the static verifier's file. */
export async function hashToken(token: string, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  const salt = randomBytes(SALT_LEN);
  const key = await derive(token, salt, params, KEY_LEN);
  return `scrypt$${params.N}$${params.r}$${params.p}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

/** Constant-time check of a token against a parsed hash. */
export async function verifyToken(token: string, h: ParsedHash): Promise<boolean> {
  const key = await derive(token, h.salt, h, h.hash.length);
  return timingSafeEqual(key, h.hash);
}

/** A hash of nothing in particular, checked when a name is unknown so the answer takes as long. */
export const DUMMY_HASH: ParsedHash = {
  ...DEFAULT_SCRYPT,
  salt: Buffer.alloc(SALT_LEN, 1),
  hash: Buffer.alloc(KEY_LEN, 2),
};
