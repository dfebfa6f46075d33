import type { HttpProxyConfig, HttpProxyRouteConfig } from '../../config/http-proxy.js';
import type { Clock } from '../../core/clock.js';
import type { Component } from '../../core/component.js';
import type { Logger } from '../../log/index.js';
import { readCaFile } from '../../tunnel/tls-material.js';
import { RouteAuthenticator } from './caller-auth.js';
import type { HttpProxyDeps } from './deps.js';
import { routeName } from './routes.js';
import { type FrontDoorDeps, HttpFrontDoor, type PreparedRoute } from './server.js';
import { upstreamCredential } from './upstream-auth/index.js';
import { UpstreamPool } from './upstream-pooled.js';
import { CachedVerifier } from './verifiers/cache.js';
import { GroupKeyVerifier } from './verifiers/group-key.js';
import { RemoteVerifier } from './verifiers/remote.js';
import { StaticVerifier } from './verifiers/static.js';
import type { Verifier } from './verifiers/types.js';

export type { HttpProxyDeps, HttpProxyMetrics } from './deps.js';
export { HttpFrontDoor } from './server.js';

interface BuildDeps {
  clock: Clock;
  log: Logger;
  groupKeys?: HttpProxyDeps['groupKeys'];
  verdicts?: HttpProxyDeps['verdicts'];
  secrets?: HttpProxyDeps['secrets'];
}

/** Static verifiers are shared per file, so two routes on one file reload it once. */
function buildVerifier(
  cfg: HttpProxyRouteConfig,
  deps: BuildDeps,
  statics: Map<string, StaticVerifier>,
): Verifier | undefined {
  const a = cfg.auth;
  if (a.type === 'none') return undefined;
  if (a.type === 'group-key') {
    if (cfg.to.kind !== 'tenant' || !deps.groupKeys) return undefined;
    return new GroupKeyVerifier(deps.groupKeys, cfg.to.tenant, cfg.to.group);
  }
  const v = a.verify!;
  if (v.type === 'static') {
    let s = statics.get(v.file);
    if (!s) {
      s = new StaticVerifier(v.file, deps.clock, deps.log);
      statics.set(v.file, s);
    }
    return s;
  }
  return new RemoteVerifier(v, deps.log);
}

/** Builds every route: its authenticator (with cache), upstream credential and agent. */
export function prepareRoutes(cfg: HttpProxyConfig, deps: BuildDeps): PreparedRoute[] {
  const statics = new Map<string, StaticVerifier>();
  return cfg.routes.map((r, index) => {
    const name = routeName(r, index);
    const inner = buildVerifier(r, deps, statics);
    const verifier = inner
      ? new CachedVerifier(inner, deps.clock, {
          ttl: r.auth.cache_ttl,
          failureTtl: r.auth.failure_ttl,
          ...(deps.verdicts ? { share: deps.verdicts(name) } : {}),
        })
      : undefined;
    return {
      index,
      name,
      cfg: r,
      auth: new RouteAuthenticator(r.auth, verifier, r.docker_registry ? 'Docker Registry' : 'tether'),
      credential: r.upstream_auth
        ? upstreamCredential(
            r.upstream_auth,
            deps.clock,
            deps.log.child({ route: name }),
            undefined,
            deps.secrets?.(name),
          )
        : undefined,
      pool:
        r.to.kind === 'url'
          ? new UpstreamPool(`${r.to.protocol}//${r.to.host}`, {
              connectTimeout: cfg.connect_timeout,
              ...(r.upstream_ca !== undefined
                ? {
                    ca: readCaFile(r.upstream_ca, {
                      what: 'http_proxy upstream_ca',
                      code: 'UPSTREAM_CA_UNREADABLE',
                    }),
                  }
                : {}),
            })
          : undefined,
    };
  });
}

/** The gateway's `http_proxy` front door; undefined when the config leaves it off. */
export function httpProxyComponent(
  cfg: HttpProxyConfig | undefined,
  ctx: HttpProxyDeps,
): Component | undefined {
  if (!cfg) return undefined;
  const log = ctx.log.child({ component: 'http_proxy' });
  let door: HttpFrontDoor | undefined;
  let routes: PreparedRoute[] = [];
  let unsubscribe: (() => void) | undefined;
  return {
    name: 'http_proxy',
    async start() {
      routes = prepareRoutes(cfg, {
        clock: ctx.clock,
        log,
        groupKeys: ctx.groupKeys,
        ...(ctx.verdicts ? { verdicts: ctx.verdicts } : {}),
        ...(ctx.secrets ? { secrets: ctx.secrets } : {}),
      });
      const metrics = ctx.metrics;
      const deps: FrontDoorDeps = {
        registry: ctx.registry,
        broker: ctx.broker,
        ...(ctx.allowlists ? { allowlists: ctx.allowlists } : {}),
        ...(ctx.refusals ? { refusals: ctx.refusals } : {}),
        ...(ctx.proxyGate ? { proxyGate: ctx.proxyGate } : {}),
        ...(ctx.listen ? { listen: ctx.listen } : {}),
        ...(ctx.throttles ? { throttles: ctx.throttles } : {}),
        clock: ctx.clock,
        log,
        // The gateway's front-door request counter and latency histogram, by status class.
        onResponse: (route, status, seconds) => metrics.httpProxyResponse(route, status, seconds),
        onAuthFailure: () => ctx.metrics.authFailures.inc({ reason: 'http_proxy' }),
      };
      // Group keys rotate and tenants go away: forget cached answers at once.
      unsubscribe = ctx.events.on(() => {
        for (const r of routes) if (r.cfg.auth.type === 'group-key') r.auth.forget();
      });
      await Promise.all(routes.map((r) => r.credential?.start()));
      door = new HttpFrontDoor(cfg, routes, deps);
      const a = await door.listen();
      const addr = a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
      log.info(
        {
          event: 'http_proxy.listening',
          address: addr,
          tls: cfg.tls !== undefined,
          routes: routes.map((r) => r.name),
        },
        `HTTP front door on ${cfg.tls ? 'https' : 'http'}://${addr} (${routes.length} route${routes.length === 1 ? '' : 's'})`,
      );
      return addr;
    },
    async stop() {
      unsubscribe?.();
      for (const r of routes) {
        r.credential?.stop();
        void r.pool?.destroy();
      }
      await door?.close();
    },
    async drain() {
      door?.stopAccepting();
    },
  };
}
