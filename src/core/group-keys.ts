import { randomBytes, timingSafeEqual } from 'node:crypto';
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
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly events: TenantEvents,
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

  /** Constant-time check of a presented key. */
  async verify(tenant: string, group: string, presented: string): Promise<boolean> {
    const row = await this.store.getGroupKey(tenant, group);
    if (!row) {
      constantTimeEqual(presented, presented);
      return false;
    }
    return constantTimeEqual(row.key, presented);
  }
}
