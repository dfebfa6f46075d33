/** Credentials from `Proxy-Authorization: Basic base64(<tenant>:<group key>)`. */
export interface BasicCredentials {
  user: string;
  password: string;
}

/**
 * - `missing`: no header; answer 407 with a challenge.
 * - `scheme`: a scheme other than Basic; answer 407 with a challenge (the client may retry with Basic).
 * - `malformed`: Basic, but not decodable into user:password; answer 400.
 */
export type ProxyAuthResult =
  | { ok: true; value: BasicCredentials }
  | { ok: false; kind: 'missing' | 'scheme' | 'malformed'; reason: string };

/** Longest header value looked at (a 63-character tenant and a 43-character key need ~150). */
export const MAX_PROXY_AUTHORIZATION = 1024;

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Parses a Proxy-Authorization header value. Pure; never throws; reasons are safe to show a client. */
export function parseProxyAuthorization(header: string | string[] | undefined): ProxyAuthResult {
  if (header === undefined) return { ok: false, kind: 'missing', reason: 'proxy authentication required' };
  if (Array.isArray(header))
    return { ok: false, kind: 'malformed', reason: 'more than one Proxy-Authorization header' };
  const value = header.trim();
  if (value === '') return { ok: false, kind: 'missing', reason: 'proxy authentication required' };
  if (value.length > MAX_PROXY_AUTHORIZATION)
    return { ok: false, kind: 'malformed', reason: 'Proxy-Authorization header too long' };
  const m = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+)(?:[ \t]+(.*))?$/.exec(value);
  if (!m) return { ok: false, kind: 'malformed', reason: 'malformed Proxy-Authorization header' };
  if (m[1]!.toLowerCase() !== 'basic') {
    return {
      ok: false,
      kind: 'scheme',
      reason: `only Basic proxy authentication is supported, not ${m[1]!.slice(0, 20)}`,
    };
  }
  const token = (m[2] ?? '').trim();
  if (token === '') return { ok: false, kind: 'malformed', reason: 'Basic credentials are empty' };
  if (!BASE64.test(token) || token.length % 4 === 1 || (token.includes('=') && token.length % 4 !== 0)) {
    return { ok: false, kind: 'malformed', reason: 'Basic credentials are not valid base64' };
  }
  let decoded: string;
  try {
    decoded = utf8.decode(Buffer.from(token, 'base64'));
  } catch {
    return { ok: false, kind: 'malformed', reason: 'Basic credentials are not UTF-8' };
  }
  const colon = decoded.indexOf(':');
  if (colon < 0)
    return { ok: false, kind: 'malformed', reason: 'Basic credentials must be <tenant>:<group key>' };
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
  if (/[\x00-\x1f\x7f]/.test(decoded))
    return { ok: false, kind: 'malformed', reason: 'Basic credentials contain control characters' };
  return { ok: true, value: { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) } };
}

/** The header value a client sends for these credentials. */
export function basicAuthorization(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`;
}
