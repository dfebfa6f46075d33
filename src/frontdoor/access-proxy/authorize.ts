import type { ForwardRegistry, LiveForward } from '../../core/forward-registry.js';
import type { GroupKeyService } from '../../core/group-keys.js';
import type { FailureThrottle } from '../../core/throttle.js';
import type { ErrorCode } from '../../errors/index.js';
import type { RepoMeta, Store } from '../../store/types.js';
import { parseRepoAuthority, repoAddress } from './authority.js';
import { parseProxyAuthorization } from './proxy-auth.js';

/** A repository a client may reach, as the access proxy resolved it. */
export interface AccessTarget {
  tenant: string;
  group: string;
  repo: string;
  /** `<group>/<repo>` as the connector registered it. */
  label: string;
  /** `<repo>.<group>.<tenant>` */
  address: string;
  /** What the connector said about the repository (live, else the last one stored). */
  meta: RepoMeta | null;
}

export interface AccessRefusal {
  ok: false;
  status: number;
  code: ErrorCode;
  /** Shown to the client; never carries a key or internal detail. */
  message: string;
  /** 407: send a `Proxy-Authenticate` challenge. */
  challenge?: boolean;
  /** 429: seconds until the source may try again. */
  retryAfter?: number;
  /** What the log may name (tenant, group, repository), when the authority parsed. */
  tenant?: string;
  address?: string;
}

export type AccessDecision = { ok: true; target: AccessTarget } | AccessRefusal;

export interface AccessRequest {
  /** CONNECT authority, or the host[:port] of an absolute-form URL. */
  authority: string;
  /** The Proxy-Authorization header as received. */
  authorization: string | string[] | undefined;
  /** The client's address (what wrong-key throttling counts by). */
  source: string;
}

export interface AccessAuthorizerDeps {
  store: Store;
  registry: ForwardRegistry;
  groupKeys: GroupKeyService;
  throttle: FailureThrottle;
}

const metaOf = (m: {
  service: string | null;
  scheme: string | null;
  host: string | null;
  dest_port: number | null;
  path: string | null;
}): RepoMeta | null =>
  m.service === null && m.host === null
    ? null
    : { service: m.service, scheme: m.scheme, host: m.host, dest_port: m.dest_port, path: m.path };

/**
 * The access proxy's one accept/reject point. Order: address syntax (400), credentials present
 * (407) and well-formed (400), throttle (429), tenant and group key (403, constant time), then
 * whether the repository exists (404) and is online (503). The key is checked before the
 * repository is looked up, with the same work for a tenant, group or repository that does not
 * exist (GroupKeyService.verify compares against a dummy key), so a caller without the key
 * learns nothing about what exists, not even from the time the answer takes; and a wrong key
 * counts against the source's throttle either way.
 * A right key does not clear a source's failure count: a caller holding one tenant's key must
 * not be able to reset the throttle between guesses at another's.
 */
export class AccessAuthorizer {
  constructor(private readonly deps: AccessAuthorizerDeps) {}

  async authorize(req: AccessRequest): Promise<AccessDecision> {
    const a = parseRepoAuthority(req.authority);
    if (!a.ok)
      return {
        ok: false,
        status: 400,
        code: 'BAD_REPOSITORY_ADDRESS',
        message: `bad repository address: ${a.reason}`,
      };
    const { tenant, group, repo } = a.value;
    const address = repoAddress(a.value);
    const named = { tenant, address };

    const cred = parseProxyAuthorization(req.authorization);
    if (!cred.ok) {
      if (cred.kind === 'malformed')
        return {
          ok: false,
          status: 400,
          code: 'PROXY_AUTHORIZATION_MALFORMED',
          message: cred.reason,
          ...named,
        };
      return {
        ok: false,
        status: 407,
        code: 'PROXY_AUTHENTICATION_REQUIRED',
        message:
          cred.kind === 'scheme'
            ? `${cred.reason}; send Proxy-Authorization: Basic base64(<tenant>:<group key>)`
            : 'proxy authentication required: send Proxy-Authorization: Basic base64(<tenant>:<group key>)',
        challenge: true,
        ...named,
      };
    }

    const { throttle } = this.deps;
    const blocked = throttle.blockedFor(req.source);
    if (blocked > 0) {
      return {
        ok: false,
        status: 429,
        code: 'TOO_MANY_FAILURES',
        message: 'too many wrong keys from this address; try again later',
        retryAfter: Math.ceil(blocked / 1000),
        ...named,
      };
    }

    if (cred.value.user !== tenant) {
      throttle.fail(req.source);
      return {
        ok: false,
        status: 403,
        code: 'TENANT_MISMATCH',
        message: `these credentials are not for tenant ${tenant}`,
        ...named,
      };
    }

    // The key is checked against the group as named (case-insensitively) BEFORE the repository
    // is looked up: whether it exists must not change the work, the time or the answer.
    if (!(await this.deps.groupKeys.verify(tenant, group, cred.value.password))) {
      throttle.fail(req.source);
      return {
        ok: false,
        status: 403,
        code: 'WRONG_GROUP_KEY',
        message: `wrong group key for group ${group} of tenant ${tenant}`,
        ...named,
      };
    }

    const found = await this.resolve(tenant, group, repo);
    if (!found)
      return {
        ok: false,
        status: 404,
        code: 'REPOSITORY_NOT_FOUND',
        message: `no repository ${address}`,
        ...named,
      };
    if (!found.online) {
      return {
        ok: false,
        status: 503,
        code: 'FORWARD_OFFLINE',
        message: `repository ${address} is offline (its connector is not connected)`,
        ...named,
      };
    }
    const slash = found.label.indexOf('/');
    const canonical = { tenant, group: found.label.slice(0, slash), repo: found.label.slice(slash + 1) };
    let meta = found.live?.meta;
    if (!meta) {
      const lease = found.lease ?? (await this.deps.store.getLease(tenant, found.label));
      meta = lease ? metaOf(lease) : null;
    }
    return {
      ok: true,
      target: {
        ...canonical,
        label: found.label,
        address: repoAddress(canonical),
        meta,
      },
    };
  }

  /**
   * Finds `<group>/<repo>` among the tenant's live forwards and leases; host names are
   * case-insensitive, so when the exact label is unknown a case-insensitive match counts.
   */
  private async resolve(
    tenant: string,
    group: string,
    repo: string,
  ): Promise<
    { label: string; online: boolean; live?: LiveForward; lease?: Parameters<typeof metaOf>[0] } | undefined
  > {
    const { registry, store } = this.deps;
    const label = `${group}/${repo}`;
    const served = registry.findLabel(tenant, label);
    if (served) return { ...served, online: true };
    const lease = await store.getLease(tenant, label);
    if (lease) return { label, lease, online: false };
    const lower = label.toLowerCase();
    const leaseMatch = (await store.listLeases(tenant)).find((l) => l.label.toLowerCase() === lower);
    if (leaseMatch) return { label: leaseMatch.label, lease: leaseMatch, online: false };
    return undefined;
  }
}
