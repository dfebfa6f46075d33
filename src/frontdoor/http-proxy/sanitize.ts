/**
 * Request sanitising: what the HTTP front door accepts from a caller and what it passes on.
 * Node's parser already refuses Content-Length together with Transfer-Encoding, duplicate
 * Content-Length and header blocks over `maxHeaderSize` (see `clientErrorResponse`); framing.ts
 * refuses the rest of what could be read two ways; this file checks the request target,
 * duplicate Host headers, and builds the header lists sent upstream and back.
 */

import type { ErrorCode } from '../../errors/index.js';
import { FRAMING_HEADERS, type Framing } from './framing.js';

export interface RequestTarget {
  path: string;
  /** "" or "?…". */
  query: string;
}

/** Headers that describe one connection, never forwarded (RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-authenticate',
]);

/** Methods whose requests carry no body unless framed (no explicit Content-Length: 0 needed). */
const BODILESS_METHODS = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE']);

/** Caller headers that never reach the upstream: credentials, and forwarding claims we make ourselves. */
const DROPPED_REQUEST = new Set([
  'authorization',
  'proxy-authorization',
  'cookie',
  'forwarded',
  'x-real-ip',
  'host',
  'expect',
  // Framing is set again by the front door from what it parsed (see framing.ts).
  'content-length',
]);

/** Parses an origin-form request target; returns a reason when the front door refuses it. */
export function parseTarget(url: string): RequestTarget | string {
  if (!url.startsWith('/')) return 'the request target must be a path (origin-form)';
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const query = q < 0 ? '' : url.slice(q);
  if (path.includes('#') || query.includes('#')) return 'a fragment is not allowed in the request target';
  if (/[\\\0]/.test(path) || /%(00|5c)/i.test(path)) return 'backslashes and NUL are not allowed in the path';
  if (/%2f/i.test(path)) return 'encoded slashes are not allowed in the path';
  if (path.includes('//')) return 'empty path segments are not allowed';
  const decodedDots = path.replace(/%2e/gi, '.');
  if (/(^|\/)\.\.?(\/|$)/.test(decodedDots)) return '"." and ".." path segments are not allowed';
  return { path, query };
}

/** How often a header (lower-case name) appears in a raw header list. */
export function headerCount(rawHeaders: readonly string[], name: string): number {
  let n = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const k = rawHeaders[i]!;
    if (k.length === name.length && k.toLowerCase() === name) n++;
  }
  return n;
}

/** True when a header (lower-case name) appears more than once in a raw header list. */
export function isRepeated(rawHeaders: readonly string[], name: string): boolean {
  return headerCount(rawHeaders, name) > 1;
}

/**
 * Header names a Connection header value lists (other than close / keep-alive), never a framing
 * header: Content-Length, Transfer-Encoding and Host are not hop-by-hop, whatever a peer says.
 */
function listedTokens(value: string, into: Set<string> | undefined): Set<string> | undefined {
  for (const t of value.split(',')) {
    const tok = t.trim().toLowerCase();
    if (tok && tok !== 'close' && tok !== 'keep-alive' && !FRAMING_HEADERS.has(tok)) {
      into ??= new Set();
      into.add(tok);
    }
  }
  return into;
}

/** Removes the headers a Connection header listed (rare, so done after the main pass). */
function dropListed(out: string[], from: number, listed: Set<string> | undefined): string[] {
  if (!listed) return out;
  const kept = out.slice(0, from);
  for (let i = from; i < out.length; i += 2) {
    if (listed.has(out[i]!.toLowerCase())) continue;
    kept.push(out[i]!, out[i + 1]!);
  }
  return kept;
}

export interface UpstreamHeaderOptions {
  /** The Host header sent upstream. */
  host: string;
  /** The caller's address (replaces any X-Forwarded-For it sent). */
  clientAddress: string;
  /** "http" or "https": how the caller reached the front door. */
  proto: string;
  /** The Host the caller asked for. */
  forwardedHost: string | undefined;
  /** The injected credential header, lower-case name. */
  credential?: readonly [string, string];
  /** How the body is framed upstream (set by the front door, never copied from the caller). */
  framing: Framing;
  /** The request method (a bodiless POST/PUT/PATCH gets an explicit Content-Length: 0). */
  method?: string;
  /**
   * The HTTP client chunks a streamed body itself and refuses a Transfer-Encoding header
   * (undici): a chunked body then gets no framing header here.
   */
  clientChunks?: boolean;
}

/**
 * The caller's headers minus hop-by-hop ones, credentials (Authorization,
 * Proxy-Authorization, Cookie and the injected header's name) and forwarding claims
 * (Forwarded, X-Forwarded-*, X-Real-IP); plus our own Host, X-Forwarded-* and credential.
 * A flat [name, value, …] list.
 */
export function upstreamHeaders(rawHeaders: readonly string[], o: UpstreamHeaderOptions): string[] {
  const credName = o.credential?.[0];
  let listed: Set<string> | undefined;
  let out: string[] = ['Host', o.host];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const k = name.toLowerCase();
    if (k === 'connection') listed = listedTokens(rawHeaders[i + 1]!, listed);
    if (HOP_BY_HOP.has(k) || DROPPED_REQUEST.has(k) || k.startsWith('x-forwarded-') || k === credName)
      continue;
    out.push(name, rawHeaders[i + 1]!);
  }
  out = dropListed(out, 2, listed);
  out.push('X-Forwarded-For', o.clientAddress, 'X-Forwarded-Proto', o.proto);
  if (o.forwardedHost) out.push('X-Forwarded-Host', o.forwardedHost);
  if (o.framing.kind === 'chunked') {
    if (!o.clientChunks) out.push('Transfer-Encoding', 'chunked');
  } else if (o.framing.kind === 'length') out.push('Content-Length', String(o.framing.length));
  else if (o.method !== undefined && !BODILESS_METHODS.has(o.method)) out.push('Content-Length', '0');
  if (o.credential) out.push(o.credential[0], o.credential[1]);
  return out;
}

/** The upstream's response headers minus hop-by-hop ones (and those its Connection header lists). */
export function responseHeaders(rawHeaders: readonly string[], drop?: ReadonlySet<string>): string[] {
  let listed: Set<string> | undefined;
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const k = name.toLowerCase();
    if (k === 'connection') listed = listedTokens(rawHeaders[i + 1]!, listed);
    if (HOP_BY_HOP.has(k) || drop?.has(k)) continue;
    out.push(name, rawHeaders[i + 1]!);
  }
  return dropListed(out, 0, listed);
}

/** What the front door answers when Node's parser refuses a request (before any route is known). */
export function clientErrorResponse(
  code: string | undefined,
  reason: string | undefined,
): { status: number; code: ErrorCode; message: string } {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, code: 'HEADERS_TOO_LARGE', message: 'request header fields too large' };
    case 'HPE_HEADERS_TIMEOUT':
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, code: 'REQUEST_TIMEOUT', message: 'the request head did not arrive in time' };
    default:
      return { status: 400, code: 'BAD_REQUEST', message: `malformed request${reason ? `: ${reason}` : ''}` };
  }
}
