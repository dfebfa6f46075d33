import { createHash, randomBytes } from 'node:crypto';
import { errors } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import type { Store, TenantRow } from '../store/types.js';
import { type Clock, iso } from './clock.js';
import type { TenantEvents } from './events.js';
import { assertTenantId } from './ids.js';
import { generateKeyPair, parsePublicKey } from './ssh-keys.js';

export const MAX_QUOTA = 3000;
export const ENROLLMENT_TTL_MS = 24 * 3_600_000;

/** Accepts 0..MAX_QUOTA as a number or a decimal string of digits; anything else is an error. */
export function parseQuota(v: unknown): number {
  let n: number;
  if (typeof v === 'number') n = v;
  else if (typeof v === 'string' && /^\d+$/.test(v.trim())) n = Number(v.trim());
  else throw errors.invalidQuota(v);
  if (!Number.isInteger(n) || n < 0 || n > MAX_QUOTA) throw errors.invalidQuota(v);
  return n;
}

export interface AddTenantOptions {
  /** An OpenSSH public key line to store instead of generating a pair. */
  publicKey?: string;
  force?: boolean;
  quota?: number;
}

export interface AddTenantResult {
  tenant: TenantRow;
  created: boolean;
  fingerprint: string;
  publicKey: string;
  /** Only when the gateway generated the pair: shown once, never stored. */
  privateKey?: string;
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** Tenants, their keys, quotas and enrollment tokens. */
export class TenantService {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly events: TenantEvents,
    private readonly defaultQuota: number,
  ) {}

  async get(id: string): Promise<TenantRow> {
    assertTenantId(id);
    const t = await this.store.getTenant(id);
    if (!t) throw errors.tenantNotFound(id);
    return t;
  }

  list(): Promise<TenantRow[]> {
    return this.store.listTenants();
  }

  async add(id: string, opts: AddTenantOptions = {}): Promise<AddTenantResult> {
    assertTenantId(id);
    const quota = opts.quota === undefined ? this.defaultQuota : parseQuota(opts.quota);
    // Validate the key before touching the store: a bad key is never stored.
    const supplied = opts.publicKey === undefined ? undefined : parsePublicKey(opts.publicKey);
    const pair = supplied ? undefined : generateKeyPair(`tether:${id}`);
    const pub = supplied ?? parsePublicKey(pair!.publicKey);
    const now = iso(this.clock);
    const row: TenantRow = { id, quota, created_at: now, updated_at: now };
    const created = await this.store.insertTenant(row);
    if (!created && !opts.force) throw errors.tenantExists(id);
    if (!created && opts.quota !== undefined) await this.store.setQuota(id, quota, now);
    await this.store.replaceKeys(id, [
      { tenant_id: id, fingerprint: pub.fingerprint, public_key: pub.line, created_at: now },
    ]);
    const tenant = (await this.store.getTenant(id)) ?? row;
    this.log.info(
      {
        event: `tenant.${created ? 'added' : 'keys_replaced'}`,
        tenant: id,
        fingerprint: pub.fingerprint,
        quota: tenant.quota,
      },
      created ? 'tenant added' : 'tenant keys replaced',
    );
    this.events.emit(created ? { kind: 'added', tenant: id } : { kind: 'keys-replaced', tenant: id });
    return {
      tenant,
      created,
      fingerprint: pub.fingerprint,
      publicKey: pub.line,
      privateKey: pair?.privateKey,
    };
  }

  async changeQuota(id: string, quota: unknown): Promise<TenantRow> {
    const q = parseQuota(quota);
    assertTenantId(id);
    if (!(await this.store.setQuota(id, q, iso(this.clock)))) throw errors.tenantNotFound(id);
    this.log.info(
      { event: 'tenant.changed', tenant: id, quota: q },
      q === 0 ? 'tenant disabled (quota 0)' : 'tenant quota changed',
    );
    this.events.emit({ kind: 'quota', tenant: id, quota: q });
    return this.get(id);
  }

  async remove(id: string): Promise<void> {
    assertTenantId(id);
    if (!(await this.store.deleteTenant(id))) throw errors.tenantNotFound(id);
    this.log.info({ event: 'tenant.removed', tenant: id }, 'tenant removed');
    this.events.emit({ kind: 'removed', tenant: id });
  }

  async addKey(id: string, publicKey: string): Promise<{ fingerprint: string }> {
    await this.get(id);
    const pub = parsePublicKey(publicKey);
    await this.store.addKey({
      tenant_id: id,
      fingerprint: pub.fingerprint,
      public_key: pub.line,
      created_at: iso(this.clock),
    });
    this.log.info({ event: 'tenant.key_added', tenant: id, fingerprint: pub.fingerprint }, 'key added');
    return { fingerprint: pub.fingerprint };
  }

  async removeKey(id: string, fingerprint: string): Promise<void> {
    if (!(await this.store.deleteKey(id, fingerprint)))
      throw errors.notFound(`key ${fingerprint} of tenant "${id}"`);
    this.log.info({ event: 'tenant.key_removed', tenant: id, fingerprint }, 'key removed');
    this.events.emit({ kind: 'key-removed', tenant: id, fingerprint });
  }

  /** A one-time enrollment token for `tether connector register`. */
  async createEnrollment(
    id: string,
    ttlMs = ENROLLMENT_TTL_MS,
  ): Promise<{ token: string; expires_at: string }> {
    await this.get(id);
    const token = `tet_${randomBytes(24).toString('base64url')}`;
    const expires_at = new Date(this.clock.now() + ttlMs).toISOString();
    await this.store.insertEnrollment({
      token_hash: hashToken(token),
      tenant_id: id,
      expires_at,
      used_at: null,
    });
    this.log.info({ event: 'tenant.enrollment_created', tenant: id, expires_at }, 'enrollment token created');
    return { token, expires_at };
  }

  /** Consumes a token and adds the key to its tenant. */
  async enroll(token: string, publicKeyLine: string): Promise<{ tenant: string; fingerprint: string }> {
    const pub = parsePublicKey(publicKeyLine);
    const tenant = await this.store.consumeEnrollment(hashToken(token), iso(this.clock));
    if (!tenant) throw errors.enrollmentInvalid();
    await this.store.addKey({
      tenant_id: tenant,
      fingerprint: pub.fingerprint,
      public_key: pub.line,
      created_at: iso(this.clock),
    });
    this.log.info(
      { event: 'tenant.enrolled', tenant, fingerprint: pub.fingerprint },
      'connector key enrolled',
    );
    return { tenant, fingerprint: pub.fingerprint };
  }

  /** Whether this key may log in as this tenant right now. */
  async checkLogin(
    id: string,
    fingerprint: string,
  ): Promise<{ ok: true; quota: number } | { ok: false; reason: string }> {
    const t = await this.store.getTenant(id);
    if (!t) return { ok: false, reason: 'unknown tenant' };
    if (t.quota === 0) return { ok: false, reason: 'tenant disabled (quota 0)' };
    const keys = await this.store.listKeys(id);
    if (!keys.some((k) => k.fingerprint === fingerprint)) return { ok: false, reason: 'key not registered' };
    return { ok: true, quota: t.quota };
  }
}
