import type { HttpProxyRouteConfig } from '../../config/http-proxy.js';

/** A configured route, ready to match. */
export interface Route {
  /** Position in the config (ties go to the earlier one). */
  index: number;
  name: string;
  cfg: HttpProxyRouteConfig;
}

/** The Host header's host name: lower case, no port, no trailing dot, IPv6 without brackets. */
export function hostOf(header: string | undefined): string {
  if (!header) return '';
  let h = header.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end > 0 ? h.slice(1, end) : h;
  }
  const colon = h.indexOf(':');
  if (colon >= 0) h = h.slice(0, colon);
  return h.endsWith('.') ? h.slice(0, -1) : h;
}

/** "/v2" matches "/v2" and "/v2/…" (not "/v2x"); a prefix ending in "/" matches what starts with it. */
export function prefixMatches(prefix: string, path: string): boolean {
  if (prefix === '/') return true;
  if (prefix.endsWith('/')) return path.startsWith(prefix);
  return path === prefix || (path.startsWith(prefix) && path.charCodeAt(prefix.length) === 47) /* / */;
}

function hostMatches(pattern: string | undefined, host: string): boolean {
  if (pattern === undefined) return true;
  if (pattern.startsWith('*.')) return host.length > pattern.length - 1 && host.endsWith(pattern.slice(1));
  return host === pattern;
}

function hostRank(pattern: string | undefined): number {
  if (pattern === undefined) return 0;
  return pattern.startsWith('*.') ? 1_000 + pattern.length : 1_000_000;
}

export function routeName(cfg: HttpProxyRouteConfig, index: number): string {
  if (cfg.name) return cfg.name;
  return cfg.host || cfg.path_prefix !== '/' ? `${cfg.host ?? ''}${cfg.path_prefix}` : `route${index}`;
}

/**
 * Picks the route for a request: the most specific host (exact, then the longest wildcard,
 * then routes without a host), then the longest path prefix, then the earlier in the config.
 */
export class RouteTable {
  private readonly ordered: Route[];

  constructor(readonly routes: readonly Route[]) {
    this.ordered = [...routes].sort(
      (a, b) =>
        hostRank(b.cfg.host) - hostRank(a.cfg.host) ||
        b.cfg.path_prefix.length - a.cfg.path_prefix.length ||
        a.index - b.index,
    );
  }

  static fromConfig(cfgs: readonly HttpProxyRouteConfig[]): RouteTable {
    return new RouteTable(cfgs.map((cfg, index) => ({ index, name: routeName(cfg, index), cfg })));
  }

  match(host: string, path: string): Route | undefined {
    for (const r of this.ordered) {
      if (hostMatches(r.cfg.host, host) && prefixMatches(r.cfg.path_prefix, path)) return r;
    }
    return undefined;
  }
}

/** The path (and query) sent upstream: the target's base path + the request path, minus the prefix when stripped. */
export function upstreamPath(cfg: HttpProxyRouteConfig, path: string, query: string): string {
  let rest = path;
  if (cfg.strip_prefix && cfg.path_prefix !== '/') {
    rest = path.slice(cfg.path_prefix.endsWith('/') ? cfg.path_prefix.length - 1 : cfg.path_prefix.length);
    if (rest === '') rest = '/';
  }
  const base = cfg.to.kind === 'url' ? cfg.to.basePath : '';
  return `${base}${rest}${query}`;
}
