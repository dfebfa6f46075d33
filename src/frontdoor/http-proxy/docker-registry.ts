/**
 * Docker Registry HTTP API v2 conventions for routes with `docker_registry: true`: the
 * `/v2/` ping challenge, the API version header, JSON error bodies, and which repository name
 * a path is about (for scopes).
 */

export const API_VERSION_HEADER = 'Docker-Distribution-API-Version';
export const API_VERSION = 'registry/2.0';

/** Registry error code for a front-door status. */
export function registryErrorCode(status: number): string {
  switch (status) {
    case 401:
      return 'UNAUTHORIZED';
    case 403:
      return 'DENIED';
    case 405:
      return 'UNSUPPORTED';
    case 429:
      return 'TOOMANYREQUESTS';
    case 404:
      return 'NAME_UNKNOWN';
    case 400:
    case 431:
      return 'UNSUPPORTED';
    default:
      return status >= 500 ? 'UNAVAILABLE' : 'UNKNOWN';
  }
}

/** The registry's error body: `{"errors":[{"code","message","detail"}]}`. */
export function registryErrorBody(status: number, message: string): string {
  return JSON.stringify({ errors: [{ code: registryErrorCode(status), message, detail: null }] });
}

// distribution/reference: path components of lower-case alphanumerics joined by separators.
const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const NAME = `${COMPONENT}(?:/${COMPONENT})*`;

export type RegistryPath =
  | { kind: 'ping' }
  | { kind: 'catalog' }
  | { kind: 'repository'; name: string; op: 'manifests' | 'blobs' | 'uploads' | 'tags' }
  | { kind: 'other' };

const PATTERNS: Array<[RegExp, 'manifests' | 'blobs' | 'uploads' | 'tags']> = [
  [new RegExp(`^/v2/(${NAME})/manifests/[^/]+$`), 'manifests'],
  [new RegExp(`^/v2/(${NAME})/blobs/uploads/[^/]*$`), 'uploads'],
  [new RegExp(`^/v2/(${NAME})/blobs/[^/]+$`), 'blobs'],
  [new RegExp(`^/v2/(${NAME})/tags/list$`), 'tags'],
];

/** What a registry API path is about (the same routes the registry itself has). */
export function classifyRegistryPath(path: string): RegistryPath {
  if (path === '/v2/' || path === '/v2') return { kind: 'ping' };
  if (path === '/v2/_catalog') return { kind: 'catalog' };
  for (const [re, op] of PATTERNS) {
    const m = re.exec(path);
    if (m) return { kind: 'repository', name: m[1]!, op };
  }
  return { kind: 'other' };
}

/** Cross-repository blob mount (`POST …/blobs/uploads/?mount=…&from=<name>`): the source repository. */
export function mountSource(query: string): string | undefined {
  if (!query) return undefined;
  const from = new URLSearchParams(query.slice(1)).get('from');
  return from ?? undefined;
}
