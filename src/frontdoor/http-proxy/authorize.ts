import { classifyRegistryPath, mountSource } from './docker-registry.js';

/**
 * Authorization after authentication: the read-only rule and the scopes a verifier listed.
 * A scope is a repository name or path ("acme/app"); "*" matches within one path segment,
 * "**" across segments.
 */

export type Decision = { ok: true } | { ok: false; status: 403 | 405; message: string };

const SAFE_METHODS = new Set(['GET', 'HEAD']);

export function methodAllowed(readOnly: boolean, method: string): boolean {
  return !readOnly || SAFE_METHODS.has(method);
}

const compiled = new WeakMap<readonly string[], RegExp[]>();

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        re += '.*';
        i++;
      } else re += '[^/]*';
    } else re += c.replace(/[.+?^${}()|[\]\\/]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function patterns(scopes: readonly string[]): RegExp[] {
  let p = compiled.get(scopes);
  if (!p) {
    p = scopes.map(globToRegExp);
    compiled.set(scopes, p);
  }
  return p;
}

/** True when one of the scopes names (or matches) `name`. */
export function scopeAllows(scopes: readonly string[], name: string): boolean {
  return patterns(scopes).some((re) => re.test(name));
}

/** True when `rel` ("/acme/app/…") lies under a scope ("acme/app", "acme/*"). */
function pathUnderScope(scopes: readonly string[], rel: string): boolean {
  if (!rel.startsWith('/')) return false;
  const segs = rel.slice(1).split('/');
  for (let n = 1; n <= segs.length; n++) {
    if (scopeAllows(scopes, segs.slice(0, n).join('/'))) return true;
  }
  return false;
}

export interface PathRequest {
  method: string;
  /** The path the caller asked for. */
  path: string;
  query: string;
  /** The route's path prefix (generic routes check scopes below it). */
  prefix: string;
  dockerRegistry: boolean;
}

/** Checks a request path against the verifier's scopes (null = no restriction). */
export function authorizeScopes(scopes: readonly string[] | null, r: PathRequest): Decision {
  if (scopes === null) return { ok: true };
  if (r.dockerRegistry) {
    const p = classifyRegistryPath(r.path);
    switch (p.kind) {
      case 'ping':
        return { ok: true };
      case 'catalog':
        return {
          ok: false,
          status: 403,
          message: 'the catalog is not available to tokens limited to some repositories',
        };
      case 'repository': {
        if (!scopeAllows(scopes, p.name))
          return { ok: false, status: 403, message: `access to repository ${p.name} is denied` };
        const from = p.op === 'uploads' ? mountSource(r.query) : undefined;
        if (from !== undefined && !scopeAllows(scopes, from)) {
          return { ok: false, status: 403, message: `access to repository ${from} is denied` };
        }
        return { ok: true };
      }
      default:
        return {
          ok: false,
          status: 403,
          message: 'this path is not part of a repository the token may access',
        };
    }
  }
  const rel =
    r.prefix === '/' ? r.path : r.path.slice(r.prefix.endsWith('/') ? r.prefix.length - 1 : r.prefix.length);
  return pathUnderScope(scopes, rel)
    ? { ok: true }
    : { ok: false, status: 403, message: 'the token does not give access to this path' };
}
