import { join } from 'node:path';
import type { SshProxyConfig } from '../../config/ssh-proxy.js';
import type { Component } from '../../core/component.js';
import type { LiveForward } from '../../core/forward-registry.js';
import { parseLabel } from '../../core/ids.js';
import { FailureThrottle } from '../../core/throttle.js';
import type { Logger } from '../../log/index.js';
import { loadOrCreateHostKey } from '../../tunnel/host-key.js';
import type { SshProxyDeps } from './deps.js';
import { OAuthRealm } from './realms/oauth.js';
import { StaticRealm } from './realms/static.js';
import { TenantRealm } from './realms/tenant.js';
import type { Realm } from './realms/types.js';
import { SshProxyServer } from './server.js';

export type { SshProxyDeps } from './deps.js';
export { formatProxyUsername, type ProxyUsername, parseProxyUsername } from './username.js';

/** The proxy's host key: `host_key` from config, else `<data_dir>/ssh_proxy_host_key`, generated on first start. */
export function loadProxyHostKey(dataDir: string, file?: string) {
  return loadOrCreateHostKey({
    file,
    generatedPath: join(dataDir, 'ssh_proxy_host_key'),
    configKey: 'ssh_proxy.host_key',
    comment: 'tether-ssh-proxy',
  });
}

/** Builds each configured realm; key files are read (and checked) now, so mistakes stop the start. */
export function buildRealms(
  cfg: SshProxyConfig,
  ctx: Pick<SshProxyDeps, 'registry' | 'groupKeys' | 'store'> & Partial<Pick<SshProxyDeps, 'broker'>>,
  log: Logger,
): Map<string, Realm> {
  const realms = new Map<string, Realm>();
  for (const [name, r] of Object.entries(cfg.realms)) {
    const where = `ssh_proxy.realms.${name}`;
    if (r.type === 'static') realms.set(name, new StaticRealm(name, r, where));
    else if (r.type === 'oauth') realms.set(name, new OAuthRealm(name, r, where, { log }));
    else
      realms.set(
        name,
        new TenantRealm(name, r, where, {
          registry: ctx.registry,
          ...(ctx.broker ? { broker: ctx.broker } : {}),
          groupKeys: ctx.groupKeys,
          store: ctx.store,
          log,
        }),
      );
  }
  return realms;
}

/** Names of routes in the config that skip the host key check (the proxy warns about them at start). */
function insecureRoutes(cfg: SshProxyConfig): string[] {
  const out: string[] = [];
  for (const [name, r] of Object.entries(cfg.realms)) {
    if (r.type === 'tenant') {
      if (r.insecure_skip_host_key_check) out.push(`${name} (realm default)`);
      for (const [t, e] of Object.entries(r.targets))
        if (e.insecure_skip_host_key_check) out.push(`${name}:${t}`);
      continue;
    }
    for (const [t, entries] of Object.entries(r.targets)) {
      entries.forEach((e, i) => {
        if (e.insecure_skip_host_key_check && !e.host_fingerprint) out.push(`${name}:${t}/${i}`);
      });
    }
  }
  return out;
}

/**
 * The SSH front door: `ssh -p 2022 'realm:target/index'@gateway`. Authenticates the user in the
 * realm, reaches and verifies the target, and relays sessions (shell, exec, scp, sftp) and,
 * where the route allows, `ssh -L` forwarding.
 */
export class SshProxy implements Component {
  readonly name = 'ssh_proxy';
  private server?: SshProxyServer;
  private unsubscribe?: () => void;
  private readonly log: Logger;

  constructor(
    private readonly ctx: SshProxyDeps,
    private readonly cfg: SshProxyConfig,
  ) {
    this.log = ctx.log.child({ component: 'ssh_proxy' });
  }

  async start(): Promise<string> {
    const { cfg, ctx, log } = this;
    const hostKey = loadProxyHostKey(ctx.dataDir, cfg.host_key);
    const realms = buildRealms(cfg, ctx, log);
    for (const r of insecureRoutes(cfg))
      log.warn(
        { event: 'ssh_proxy.insecure_route', route: r },
        `ssh proxy route ${r} skips the target host key check`,
      );

    if ([...realms.values()].some((r) => r.type === 'tenant')) {
      // A group key exists as soon as a forward of its group is online, so logins can check it
      // before anyone lists the tenant's repositories.
      const ensure = (f: LiveForward) => {
        const p = parseLabel(f.label);
        if (p)
          ctx.groupKeys
            .ensure(f.tenant, p.group)
            .catch((err: unknown) =>
              log.warn({ err, tenant: f.tenant, group: p.group }, 'could not create the group key'),
            );
      };
      const onForward = (e: { type: string; forward: LiveForward }) => {
        if (e.type === 'up') ensure(e.forward);
      };
      ctx.registry.on('forward', onForward);
      this.unsubscribe = () => ctx.registry.off('forward', onForward);
      for (const f of ctx.registry.list()) ensure(f);
    }

    const throttle = new FailureThrottle(
      ctx.clock,
      {
        maxFailures: cfg.login_throttle.max_failures,
        windowMs: cfg.login_throttle.window,
        blockMs: cfg.login_throttle.block_for,
      },
      ctx.throttles && { to: ctx.throttles, name: 'ssh_proxy' },
    );
    const ident = 'Tether_ssh_proxy';
    this.server = new SshProxyServer(
      {
        hostKey: hostKey.privateKey,
        algorithms: cfg.algorithms,
        ident,
        keepaliveInterval: cfg.keepalive_interval,
        keepaliveCountMax: cfg.keepalive_count_max,
        maxUnauthenticated: cfg.max_unauthenticated,
        maxUnauthenticatedPerSource: cfg.max_unauthenticated_per_source,
        ...(ctx.sharedSlots
          ? {
              slots: ctx.sharedSlots(
                'ssh_proxy',
                cfg.max_unauthenticated,
                cfg.max_unauthenticated_per_source,
              ),
            }
          : {}),
      },
      {
        realms,
        throttle,
        clock: ctx.clock,
        log,
        metrics: ctx.metrics,
        settings: {
          handshakeTimeout: cfg.handshake_timeout,
          idleTimeout: cfg.idle_timeout,
          connectTimeout: cfg.connect_timeout,
          keepaliveInterval: cfg.keepalive_interval,
          keepaliveCountMax: cfg.keepalive_count_max,
          maxAuthTries: cfg.max_auth_tries,
          ident,
          targetAlgorithms: cfg.target_algorithms,
        },
      },
    );
    const a = await this.server.listen(cfg.listen.host, cfg.listen.port, ctx.proxyGate, ctx.listen);
    const addr = a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
    log.info(
      {
        event: 'ssh_proxy.started',
        listen: addr,
        host_fingerprint: hostKey.fingerprint,
        realms: Object.fromEntries([...realms].map(([n, r]) => [n, r.type])),
      },
      `ssh proxy on ${addr} (host key ${hostKey.fingerprint}), realms: ${[...realms.keys()].join(', ')}`,
    );
    return addr;
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    await this.server?.close();
  }

  /** Drain: no new SSH connection; open ones finish. */
  async drain(): Promise<void> {
    this.server?.stopAccepting();
  }
}

/** The gateway's `ssh_proxy` front door; undefined when the config leaves it off. */
export function sshProxyComponent(
  cfg: SshProxyConfig | undefined,
  deps: SshProxyDeps,
): Component | undefined {
  if (!cfg) return undefined;
  return new SshProxy(deps, cfg);
}
