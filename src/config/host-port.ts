import { isIP } from 'node:net';

/** A parsed "host:port". `host` never carries IPv6 brackets. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export type ParseResult = { ok: true; value: HostPort } | { ok: false; problem: string };

export interface ParseOptions {
  /** Host used when the text is ":port". Without it an empty host is a problem. */
  defaultHost?: string;
  /** Accept port 0 ("let the OS choose"), for listen addresses. */
  allowPortZero?: boolean;
}

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?$/;

/** A host name or an IP address (IPv6 without brackets). */
export function isValidHost(host: string): boolean {
  return isIP(host) !== 0 || HOSTNAME.test(host);
}

/**
 * "host:port", "[v6]:port" or ":port" → parts, or the problem in words a user understands.
 */
export function parseHostPort(text: string, opts: ParseOptions = {}): ParseResult {
  const s = text.trim();
  if (s === '') return { ok: false, problem: 'is empty (use "host:port")' };
  let host: string;
  let portText: string;
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    if (end < 0 || s[end + 1] !== ':') return { ok: false, problem: `"${text}" is not "host:port"` };
    host = s.slice(1, end);
    portText = s.slice(end + 2);
    if (isIP(host) !== 6) return { ok: false, problem: `"${host}" in "${text}" is not an IPv6 address` };
  } else {
    const colon = s.lastIndexOf(':');
    if (colon < 0) return { ok: false, problem: `"${text}" has no port (use "host:port")` };
    host = s.slice(0, colon);
    portText = s.slice(colon + 1);
    if (host.includes(':')) return { ok: false, problem: `"${text}": write IPv6 addresses as "[addr]:port"` };
  }
  if (!/^\d{1,5}$/.test(portText))
    return { ok: false, problem: `"${text}": port "${portText}" is not a number` };
  const port = Number(portText);
  const min = opts.allowPortZero ? 0 : 1;
  if (port < min || port > 65535) {
    return { ok: false, problem: `"${text}": port ${port} is out of range (${min}-65535)` };
  }
  if (host === '') {
    if (opts.defaultHost === undefined)
      return { ok: false, problem: `"${text}" has no host (use "host:port")` };
    host = opts.defaultHost;
  } else if (!isValidHost(host)) {
    return { ok: false, problem: `"${text}": "${host}" is not a host name or IP address` };
  }
  return { ok: true, value: { host, port } };
}

/** The inverse of parseHostPort: brackets IPv6 literals. */
export function formatHostPort(hp: HostPort): string {
  return isIP(hp.host) === 6 ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}
