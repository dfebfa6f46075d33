import type { SshRealmConfig } from '../../../config/ssh-proxy.js';
import { systemClock } from '../../../core/clock.js';
import type { ForwardRegistry } from '../../../core/forward-registry.js';
import type { GroupKeyService } from '../../../core/group-keys.js';
import { isValidName, TENANT_ID } from '../../../core/ids.js';
import { isTetherError, TetherError } from '../../../errors/index.js';
import type { Logger } from '../../../log/index.js';
import type { Store } from '../../../store/types.js';
import { ConnectionBroker } from '../../../tunnel/broker.js';
import { type LoginFields, loadPrivateKey } from './login.js';
import { type LoginAttempt, type LoginDecision, type Realm, refuse } from './types.js';

type TenantConfig = Extract<SshRealmConfig, { type: 'tenant' }>;

export interface TenantTarget {
  repo: string;
  group: string;
  tenant: string;
}

/** `<repo>.<group>.<tenant>` → its parts, or the reason it is not one (safe to show). */
export function parseTenantTarget(
  target: string,
): { ok: true; value: TenantTarget } | { ok: false; reason: string } {
  const parts = target.split('.');
  if (parts.length !== 3) return { ok: false, reason: `target "${target}" is not <repo>.<group>.<tenant>` };
  const [repo, group, tenantRaw] = parts as [string, string, string];
  const tenant = tenantRaw.toLowerCase();
  if (!isValidName(repo)) return { ok: false, reason: `invalid repository name "${repo}" in "${target}"` };
  if (!isValidName(group)) return { ok: false, reason: `invalid group name "${group}" in "${target}"` };
  if (!TENANT_ID.test(tenant))
    return { ok: false, reason: `invalid tenant id "${tenantRaw}" in "${target}"` };
  return { ok: true, value: { repo, group, tenant } };
}

export interface TenantRealmDeps {
  registry: ForwardRegistry;
  /** Opens the channel to the repository's sshd (built over `registry` when absent). */
  broker?: Pick<ConnectionBroker, 'open'>;
  groupKeys: GroupKeyService;
  store: Store;
  log: Logger;
}

interface PartialLogin {
  user?: string;
  password?: string;
  privateKey?: string;
  hostFingerprint?: string;
  insecureSkipHostKeyCheck?: boolean;
  allowPortForwarding?: boolean;
}

function partial(fields: LoginFields & { host_fingerprint?: string }, where: string): PartialLogin {
  const privateKey = loadPrivateKey(fields, where);
  const out: PartialLogin = {};
  if (fields.user !== undefined) out.user = fields.user;
  if (fields.password !== undefined) out.password = fields.password;
  if (privateKey !== undefined) out.privateKey = privateKey;
  if (fields.host_fingerprint !== undefined) out.hostFingerprint = fields.host_fingerprint;
  if (fields.insecure_skip_host_key_check !== undefined)
    out.insecureSkipHostKeyCheck = fields.insecure_skip_host_key_check;
  if (fields.allow_port_forwarding !== undefined) out.allowPortForwarding = fields.allow_port_forwarding;
  return out;
}

/**
 * `tenant`: the target is `<repo>.<group>.<tenant>`, an `ssh` repository behind a connector;
 * the password is its group key. The proxy reaches the repository's sshd through the tunnel
 * and logs in with the realm's login (per-target overrides in `targets`).
 */
export class TenantRealm implements Realm {
  readonly type = 'tenant';
  readonly prompt = 'Group key: ';
  private readonly defaults: PartialLogin;
  private readonly perTarget = new Map<string, PartialLogin>();
  private readonly broker: Pick<ConnectionBroker, 'open'>;

  constructor(
    readonly name: string,
    cfg: TenantConfig,
    where: string,
    private readonly deps: TenantRealmDeps,
  ) {
    this.broker =
      deps.broker ?? new ConnectionBroker({ registry: deps.registry, clock: systemClock, log: deps.log });
    this.defaults = partial(cfg, where);
    for (const [t, fields] of Object.entries(cfg.targets))
      this.perTarget.set(t.toLowerCase(), partial(fields, `${where}.targets.${t}`));
  }

  checkTarget(target: string, index: number): string | undefined {
    const p = parseTenantTarget(target);
    if (!p.ok) return `${p.reason} (realm ${this.name} names a repository as <repo>.<group>.<tenant>)`;
    if (index !== 0) return `a repository has one address: use index 0 (${this.name}:${target}/0)`;
    return undefined;
  }

  async login(a: LoginAttempt, log: Logger = this.deps.log): Promise<LoginDecision> {
    const p = parseTenantTarget(a.target);
    if (!p.ok) return refuse('BAD_TARGET', p.reason, { final: true, countsAsFailure: false });
    const { repo, group, tenant } = p.value;
    const address = `${repo}.${group}.${tenant}`;
    const name = `${a.realm}:${address}/${a.index}`;
    // served here or by another cluster member or worker; labels match case-insensitively
    const served = this.deps.registry.findLabel(tenant, `${group}/${repo}`);
    const keyGroup = served ? served.label.slice(0, served.label.indexOf('/')) : group;
    // The key is checked before anything about the repository is told.
    if (!(await this.deps.groupKeys.verify(tenant, keyGroup, a.secret))) {
      return refuse('WRONG_GROUP_KEY', `wrong group key for group ${group} of tenant ${tenant}`, {
        final: false,
        countsAsFailure: true,
      });
    }
    if (!served)
      return refuse('FORWARD_OFFLINE', `repository ${address} is offline (its connector is not connected)`, {
        final: true,
        countsAsFailure: false,
      });
    let meta = served.live?.meta;
    if (!meta) {
      const lease = await this.deps.store.getLease(tenant, served.label).catch(() => undefined);
      meta = lease?.service
        ? {
            service: lease.service,
            scheme: lease.scheme,
            host: lease.host,
            dest_port: lease.dest_port,
            path: lease.path,
          }
        : null;
    }
    if (meta?.service && meta.service !== 'ssh') {
      return refuse('NOT_SSH', `repository ${address} is a ${meta.service} repository, not ssh`, {
        final: true,
        countsAsFailure: false,
      });
    }
    const login = {
      insecureSkipHostKeyCheck: false,
      allowPortForwarding: false,
      ...this.defaults,
      ...this.perTarget.get(address.toLowerCase()),
    };
    if (!login.user || (login.password === undefined && login.privateKey === undefined)) {
      log.warn(
        { event: 'ssh_proxy.tenant.no_login', target: address },
        'no user and password or private key configured for this repository',
      );
      return refuse('NO_LOGIN', `this gateway has no login configured for ${address}`, {
        final: true,
        countsAsFailure: false,
      });
    }
    const label = served.label;
    return {
      ok: true,
      tenant,
      route: {
        ...login,
        user: login.user,
        name,
        address: `tunnel ${tenant}/${label}`,
        dial: async (origin) => {
          try {
            const c = await this.broker.open({
              tenant,
              label,
              origin,
              frontDoor: 'ssh_proxy',
              identity: `ssh user ${name} (group key ${keyGroup})`,
            });
            return { stream: c.stream, close: (bytesIn, bytesOut) => c.close(bytesIn, bytesOut) };
          } catch (err) {
            // outside the tenant's or repository's allow_from: the caller is told why, as is
            if (isTetherError(err, 'SOURCE_NOT_ALLOWED')) throw err;
            const why = isTetherError(err, 'FORWARD_OFFLINE')
              ? 'its connector is not connected'
              : isTetherError(err) && err.status === 429 // the tenant's connection cap or traffic quota
                ? err.message
                : 'its connector did not accept the connection';
            throw new TetherError('TARGET_UNREACHABLE', why, { status: 502, retryable: true, cause: err });
          }
        },
      },
    };
  }
}
