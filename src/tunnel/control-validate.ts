import net from 'node:net';
import { SERVICES } from '../config/uri.js';
import { hasControlChars, isValidHostname } from '../core/ids.js';
import type { RepoMeta } from '../store/types.js';

/** Longest repository path a connector may report. */
export const MAX_META_PATH = 1024;

export type MetaCheck = { ok: true; meta: RepoMeta } | { ok: false; field: string; problem: string };

/**
 * Checks repository metadata from a connector's `repo` message where it enters: every field the
 * gateway stores, shows and later dials or puts into a header must be well formed here.
 */
export function checkRepoMeta(msg: Record<string, unknown>): MetaCheck {
  const bad = (field: string, problem: string): MetaCheck => ({ ok: false, field, problem });
  const { service, scheme, host, port, path } = msg;
  if (typeof service !== 'string' || !Object.hasOwn(SERVICES, service)) {
    return bad('service', `must be one of ${Object.keys(SERVICES).join(', ')}`);
  }
  const spec = SERVICES[service]!;
  let sch: string | null = null;
  if (scheme !== undefined && scheme !== null) {
    if (typeof scheme !== 'string' || !spec.schemes.includes(scheme)) {
      return bad(
        'scheme',
        spec.schemes.length > 0 ? `must be one of ${spec.schemes.join(', ')}` : `${service} takes no scheme`,
      );
    }
    sch = scheme;
  } else if (spec.schemes.length > 0) {
    return bad('scheme', `${service} needs one of ${spec.schemes.join(', ')}`);
  }
  if (typeof host !== 'string' || (net.isIP(host) === 0 && !isValidHostname(host))) {
    return bad(
      'host',
      'must be a host name or an IP address (no spaces or control characters, at most 253 characters)',
    );
  }
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    return bad('port', 'must be a whole number from 1 to 65535');
  }
  let p: string | null = null;
  if (path !== undefined && path !== null) {
    if (
      typeof path !== 'string' ||
      !path.startsWith('/') ||
      path.length > MAX_META_PATH ||
      hasControlChars(path)
    ) {
      return bad(
        'path',
        `must start with "/", be at most ${MAX_META_PATH} characters and hold no control characters`,
      );
    }
    p = path;
  }
  return { ok: true, meta: { service, scheme: sch, host, dest_port: port, path: p } };
}
