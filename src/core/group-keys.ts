import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Logger } from '../log/index.js';
import type { GroupKeyRow, Store } from '../store/types.js';
import { type Clock, iso } from './clock.js';
import type { TenantEvents } from './events.js';

export function newGroupKey(): string {
  return randomBytes(32).toString('base64url');
}

export function constantTimeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  if (ab.length !== bb.length) {
    timingSafeEqual(ab, ab);
    return false;
  }
  return timingSafeEqual(ab, bb);
}

/** One random key per (tenant, group); front doors that name a repository require it. */
export class GroupKeyService {
  /** Compared against when the tenant or group has no key, so a miss costs what a hit costs. */
  private readonly dummyKey = newGroupKey();

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly events: TenantEvents,
    /** The comparison of two 32-byte digests (tests count its calls). */
    private readonly compare: (a: Buffer, b: Buffer) => boolean = timingSafeEqual,
  ) {}

  ensure(tenant: string, group: string): Promise<GroupKeyRow> {
    return this.store.ensureGroupKey({
      tenant_id: tenant,
      group_name: group,
      key: newGroupKey(),
      created_at: iso(this.clock),
    });
  }

  list(tenant: string): Promise<GroupKeyRow[]> {
    return this.store.listGroupKeys(tenant);
  }

  async rotate(tenant: string, group: string): Promise<GroupKeyRow> {
    const row = { tenant_id: tenant, group_name: group, key: newGroupKey(), created_at: iso(this.clock) };
    await this.store.setGroupKey(row);
    this.log.info({ event: 'group_key.rotated', tenant, group }, 'group key rotated');
    this.events.emit({ kind: 'group-key-rotated', tenant, group });
    return row;
  }

  /**
   * Checks a presented key for (tenant, group): the group matched exactly, else
   * case-insensitively (host names are). The same work whether or not the tenant, the group or
   * its key exists: one query for the tenant's keys, then one constant-time comparison of
   * SHA-256 digests (fixed length whatever was presented) against the key or a dummy one.
   */
  async verify(tenant: string, group: string, presented: string): Promise<boolean> {
    const rows = await this.store.listGroupKeys(tenant);
    const lower = group.toLowerCase();
    const row =
      rows.find((r) => r.group_name === group) ?? rows.find((r) => r.group_name.toLowerCase() === lower);
    const same = this.compare(digest(row?.key ?? this.dummyKey), digest(presented));
    return same && row !== undefined;
  }
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();
