/**
 * Repository URIs in connect.yaml: `service[+scheme]://host[:port][/path]`.
 *
 * The service says what lives behind the forward (the gateway shows it in its listings);
 * the scheme says how to speak to it where a service has more than one way; host and port
 * are where the connector dials. Parsing is pure: a result or a message for the user.
 */

export interface ServiceSpec {
  /** Schemes the service accepts; empty = no scheme allowed. */
  schemes: readonly string[];
  /** Default port, by scheme when it depends on it; undefined = a port is required. */
  defaultPort: number | Readonly<Record<string, number>> | undefined;
}

export const SERVICES: Readonly<Record<string, ServiceSpec>> = Object.freeze({
  smb: { schemes: [], defaultPort: 445 },
  webdav: { schemes: ['http', 'https'], defaultPort: { http: 80, https: 443 } },
  cq5: { schemes: ['http', 'https'], defaultPort: { http: 80, https: 443 } },
  cmis: { schemes: ['http', 'https'], defaultPort: { http: 80, https: 443 } },
  alfresco: { schemes: ['http', 'https'], defaultPort: { http: 80, https: 443 } },
  ssh: { schemes: [], defaultPort: 22 },
  http: { schemes: [], defaultPort: 80 },
  https: { schemes: [], defaultPort: 443 },
  tcp: { schemes: [], defaultPort: undefined },
});

export const SERVICE_NAMES = Object.keys(SERVICES);

export interface RepositoryTarget {
  service: string;
  scheme: string | null;
  host: string;
  port: number;
  path: string | null;
}

export type UriResult = { ok: true; target: RepositoryTarget } | { ok: false; message: string };

const FORM = 'use service[+scheme]://host[:port][/path], e.g. "smb://fileserver:445"';
const URI = /^([A-Za-z][A-Za-z0-9]*)(?:\+([A-Za-z][A-Za-z0-9]*))?:\/\/([^/?#]*)([/?#].*)?$/;
const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?$/;
const IPV6 = /^[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?$/;

function schemeHint(service: string, spec: ServiceSpec): string {
  return spec.schemes.map((s) => `${service}+${s}://`).join(' or ');
}

/** Parses one repository URI. Messages name what is wrong, never where (the caller adds that). */
export function parseRepositoryUri(value: unknown): UriResult {
  const fail = (message: string): UriResult => ({ ok: false, message });
  if (typeof value !== 'string') {
    return fail(`must be a URI string (${FORM}), got ${value === null ? 'nothing' : typeof value}`);
  }
  const text = value.trim();
  if (text === '') return fail(`is empty: ${FORM}`);
  if (/\s/.test(text)) return fail(`"${text}" contains white space: ${FORM}`);
  const m = URI.exec(text);
  if (!m) return fail(`"${text}" is not a repository URI: ${FORM}`);
  const service = m[1]!.toLowerCase();
  const scheme = m[2]?.toLowerCase() ?? null;
  const authority = m[3]!;
  const rest = m[4] ?? null;

  const spec = SERVICES[service];
  if (!spec) return fail(`unknown service "${service}": use one of ${SERVICE_NAMES.join(', ')}`);
  if (scheme === null && spec.schemes.length > 0) {
    return fail(`${service} needs a scheme: ${schemeHint(service, spec)}`);
  }
  if (scheme !== null && spec.schemes.length === 0) {
    return fail(
      `${service} takes no scheme (remove "+${scheme}"): ${service}://host${spec.defaultPort === undefined ? ':port' : '[:port]'}`,
    );
  }
  if (scheme !== null && !spec.schemes.includes(scheme)) {
    return fail(`unknown scheme "${scheme}" for ${service}: use ${schemeHint(service, spec)}`);
  }
  if (authority.includes('@')) {
    return fail('credentials do not belong in the URI (the connector forwards TCP; the application logs in)');
  }

  let host: string;
  let portText: string | undefined;
  const v6 = /^\[([^\]]*)\](?::(.*))?$/.exec(authority);
  if (v6) {
    host = v6[1]!;
    portText = v6[2];
    if (!IPV6.test(host) || !host.includes(':')) return fail(`"${host}" is not an IPv6 address`);
  } else {
    const idx = authority.lastIndexOf(':');
    host = idx >= 0 ? authority.slice(0, idx) : authority;
    portText = idx >= 0 ? authority.slice(idx + 1) : undefined;
    if (host === '') return fail(`"${text}" has no host: ${FORM}`);
    if (host.includes(':'))
      return fail(`"${host}" looks like an IPv6 address: write it in brackets, [${host}]`);
    if (!HOSTNAME.test(host)) return fail(`"${host}" is not a valid host name or address`);
  }

  let port: number;
  if (portText !== undefined) {
    if (!/^\d+$/.test(portText)) return fail(`port "${portText}" is not a number`);
    port = Number(portText);
    if (port < 1 || port > 65535) return fail(`port ${portText} is out of range (1-65535)`);
  } else if (spec.defaultPort === undefined) {
    return fail(`${service} needs a port: ${service}://${v6 ? `[${host}]` : host}:port`);
  } else {
    port = typeof spec.defaultPort === 'number' ? spec.defaultPort : spec.defaultPort[scheme!]!;
  }

  let path: string | null = null;
  if (rest !== null) {
    if (!rest.startsWith('/')) return fail(`"${text}": a path must start with "/"`);
    path = rest;
  }
  return { ok: true, target: { service, scheme, host: host.toLowerCase(), port, path } };
}

/** The canonical text of a target: the form the connector prints. */
export function formatTarget(t: RepositoryTarget): string {
  const host = t.host.includes(':') ? `[${t.host}]` : t.host;
  return `${t.service}${t.scheme ? `+${t.scheme}` : ''}://${host}:${t.port}${t.path ?? ''}`;
}

/** "host:port" of a target, with IPv6 hosts in brackets. */
export function destinationOf(t: Pick<RepositoryTarget, 'host' | 'port'>): string {
  return `${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`;
}
