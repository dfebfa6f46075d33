import { CidrSet, normalizeAddress, parseCidrList } from '../config/cidr.js';
import type { Clock } from '../core/clock.js';
import type { TenantEvents } from '../core/events.js';
import type { Logger } from '../log/index.js';
import type { AllowlistRow, Store } from '../store/types.js';

/** One change of a tenant's (label '') or a repository's lists; null removes one, undefined keeps it. */
export interface AllowlistPatch {
  allowFrom?: readonly string[] | null;
  tunnelFrom?: readonly string[] | null;
}

interface Entry {
  allowFrom: CidrSet | null;
  tunnelFrom: CidrSet | null;
}

const key = (tenant: string, label: string) => `${tenant}\0${label}`;

function decode(text: string | null): CidrSet | null {
  if (text === null) return null;
  try {
    const list = JSON.parse(text) as unknown;
    return Array.isArray(list) ? new CidrSet(list.map(String)) : null;
  } catch {
    // a row that does not parse admits nobody rather than everybody
    return new CidrSet([]);
  }
}

/**
 * Source-address allowlists per tenant and per repository (`allow_from`) and for a tenant's
 * connector logins (`tunnel_from`), held in memory from the store and changed through here (the
 * admin API), so a change takes effect for the next connection. A caller must be inside the
 * tenant's list and inside the repository's list, where each is set. Another cluster member's
 * (or the primary's) change arrives as an `allow-from` event and is re-read from the store. Once a
 * tenant's lists changed here, `onChanged` listeners hear it (they end what the lists no longer admit).
 */
export class SourceAllowlists {
  private readonly entries = new Map<string, Entry>();
  private readonly listeners = new Set<(tenant: string) => void>();
  private unsubscribe?: () => void;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly events?: TenantEvents,
  ) {}

  async start(): Promise<void> {
    for (const row of await this.store.listAllowlists()) this.apply(row);
    this.unsubscribe = this.events?.on((c) => {
      if (c.kind === 'removed') this.forget(c.tenant);
      else if (c.kind === 'allow-from' && c.origin === 'remote') {
        this.reload(c.tenant).then(
          () => this.changed(c.tenant),
          (err: unknown) => this.log.warn({ err, tenant: c.tenant }, 'could not reload source allowlists'),
        );
      }
    });
  }

  stop(): void {
    this.unsubscribe?.();
  }

  /** Calls `fn` with the tenant each time its lists changed here (applied, not only stored). */
  onChanged(fn: (tenant: string) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private changed(tenant: string): void {
    for (const fn of [...this.listeners]) {
      try {
        fn(tenant);
      } catch (err) {
        this.log.error({ err, tenant }, 'a source allowlist change could not be enforced');
      }
    }
  }

  private apply(row: AllowlistRow): void {
    const k = key(row.tenant_id, row.label);
    const e = { allowFrom: decode(row.allow_from), tunnelFrom: decode(row.tunnel_from) };
    if (!e.allowFrom && !e.tunnelFrom) this.entries.delete(k);
    else this.entries.set(k, e);
  }

  private forget(tenant: string): void {
    for (const k of [...this.entries.keys()]) if (k.startsWith(`${tenant}\0`)) this.entries.delete(k);
  }

  /** Re-reads one tenant's lists (another cluster member changed them). */
  async reload(tenant: string): Promise<void> {
    const rows = await this.store.listAllowlists(tenant);
    this.forget(tenant);
    for (const r of rows) this.apply(r);
  }

  /**
   * Why a caller from `ip` may not reach the tenant's repository `label`, or undefined when it
   * may: the message names the list that refused it, never its contents.
   */
  callerRefusal(tenant: string, label: string, ip: string): string | undefined {
    const addr = normalizeAddress(ip);
    const t = this.entries.get(key(tenant, ''))?.allowFrom;
    if (t && !t.has(addr)) return `source address ${addr} is not in the allow_from list of tenant ${tenant}`;
    const r = this.entries.get(key(tenant, label))?.allowFrom;
    if (r && !r.has(addr))
      return `source address ${addr} is not in the allow_from list of repository ${label}`;
    return undefined;
  }

  /** Why a connector of `tenant` may not log in from `ip`, or undefined when it may. */
  tunnelRefusal(tenant: string, ip: string): string | undefined {
    const addr = normalizeAddress(ip);
    const t = this.entries.get(key(tenant, ''))?.tunnelFrom;
    if (t && !t.has(addr)) return `source address ${addr} is not in the tunnel_from list of tenant ${tenant}`;
    return undefined;
  }

  /** The lists of a tenant (label '') or a repository as CIDR texts (null = not set). */
  view(tenant: string, label = ''): { allow_from: string[] | null; tunnel_from?: string[] | null } {
    const e = this.entries.get(key(tenant, label));
    const allow = e?.allowFrom ? [...e.allowFrom.texts] : null;
    if (label !== '') return { allow_from: allow };
    return { allow_from: allow, tunnel_from: e?.tunnelFrom ? [...e.tunnelFrom.texts] : null };
  }

  /**
   * Changes a tenant's or repository's lists (validated: INVALID_CIDR names the bad value), stores
   * them and applies them at once; an empty list removes it (anyone may connect).
   */
  async change(tenant: string, label: string, patch: AllowlistPatch): Promise<void> {
    const current = this.view(tenant, label);
    const next = (
      v: readonly string[] | null | undefined,
      cur: string[] | null | undefined,
      what: string,
    ) => {
      if (v === undefined) return cur ?? null;
      if (v === null || v.length === 0) return null;
      return parseCidrList(v, what);
    };
    const allow = next(patch.allowFrom, current.allow_from, 'allow_from');
    const tunnel = label === '' ? next(patch.tunnelFrom, current.tunnel_from, 'tunnel_from') : null;
    const row: AllowlistRow = {
      tenant_id: tenant,
      label,
      allow_from: allow ? JSON.stringify(allow) : null,
      tunnel_from: tunnel ? JSON.stringify(tunnel) : null,
      updated_at: new Date(this.clock.now()).toISOString(),
    };
    await this.store.setAllowlist(row);
    this.apply(row);
    this.log.info(
      {
        event: 'tenant.allow_from_changed',
        tenant,
        ...(label ? { label } : {}),
        allow_from: allow,
        ...(label === '' ? { tunnel_from: tunnel } : {}),
      },
      `source allowlists of ${label ? `${tenant} ${label}` : tenant} changed`,
    );
    this.changed(tenant);
    this.events?.emit({ kind: 'allow-from', tenant });
  }
}
