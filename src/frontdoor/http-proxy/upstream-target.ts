import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { RepoMeta } from '../../store/types.js';

/** A host name (RFC 1123 labels, an optional trailing dot), an IPv4 address, or a bracketed IPv6 one. */
const HOST_NAME =
  /^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$/;
const IPV6 = /^\[[0-9A-Fa-f:.]{2,45}(?:%[A-Za-z0-9._~-]{1,32})?\]$/;

/** True when a host can go into a Host header and a URL as it is. */
export function isHeaderSafeHost(host: string): boolean {
  return HOST_NAME.test(host) || IPV6.test(host);
}

/**
 * The Host header for a `tenant://` route from the repository metadata its connector sent:
 * `host[:port]`, or the caller's Host when the metadata names none. The metadata comes from a
 * tenant: a host or port that cannot be a Host header is refused (a string reason), never built
 * into a header or URL.
 */
export function tenantUpstreamHost(
  meta: Pick<RepoMeta, 'host' | 'dest_port'> | null | undefined,
  callerHost: string | undefined,
): string | { refused: string } {
  if (!meta?.host) return callerHost ?? 'localhost';
  const raw = String(meta.host);
  const host = raw.includes(':') && !raw.startsWith('[') ? `[${raw}]` : raw;
  if (!isHeaderSafeHost(host)) return { refused: 'its host is not a valid host name' };
  const port = meta.dest_port;
  if (port === null || port === undefined) return host;
  if (!Number.isInteger(port) || port < 1 || port > 65_535)
    return { refused: 'its port is not a valid port' };
  return `${host}:${port}`;
}

/** Gives a tunnel channel the few socket methods node's HTTP client calls (as ssh2's own HTTP agent does). */
export function asSocket(stream: Duplex): Socket {
  const s = stream as Duplex & Record<string, unknown>;
  const noop = () => s;
  s.setKeepAlive = noop;
  s.setNoDelay = noop;
  s.setTimeout = noop;
  s.ref = noop;
  s.unref = noop;
  s.destroySoon = () => stream.destroy();
  return s as unknown as Socket;
}

/** A reason phrase that may be passed on as it is: visible ASCII, spaces and tabs. */
export function isSafeReason(reason: string | undefined): boolean {
  return reason === undefined || /^[\t\x20-\x7e]*$/.test(reason);
}
