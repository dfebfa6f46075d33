import type { Kysely } from 'kysely';
import type { Database } from './kysely-store.js';
import type { DirectoryRow, LeaseRange, LeaseRow } from './types.js';

/** Lease and directory writes of KyselyStore that take more than one statement. */

export async function leasePort(
  db: Kysely<Database>,
  tenantId: string,
  label: string,
  range: LeaseRange,
  now: string,
): Promise<LeaseRow | undefined> {
  // ON CONFLICT DO NOTHING instead of catching the unique violation: a failed statement
  // would abort an enclosing PostgreSQL transaction (withTenantLock).
  for (let attempt = 0; attempt < 50; attempt++) {
    const existing = await db
      .selectFrom('leases')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('label', '=', label)
      .executeTakeFirst();
    if (existing) return existing;
    const used = await db
      .selectFrom('leases')
      .select('port')
      .where('port', '>=', range.low)
      .where('port', '<=', range.high)
      .orderBy('port')
      .execute();
    let port = range.low;
    for (const u of used) {
      if (u.port === port) port++;
      else if (u.port > port) break;
    }
    if (port > range.high) return undefined;
    const row: LeaseRow = {
      tenant_id: tenantId,
      label,
      port,
      created_at: now,
      last_used_at: now,
      established_at: null,
      service: null,
      scheme: null,
      host: null,
      dest_port: null,
      path: null,
    };
    const inserted = await db
      .insertInto('leases')
      .values(row)
      .onConflict((oc) => oc.doNothing())
      .returning('port')
      .executeTakeFirst();
    if (inserted) return row;
    // Another writer took that port or that label first: look again.
  }
  throw new Error('lease allocation kept conflicting; giving up');
}

export async function expireLeases(
  db: Kysely<Database>,
  cutoffs: { before: string; unusedBefore: string },
  live: Array<{ tenant_id: string; label: string }>,
) {
  const stale = await db
    .selectFrom('leases')
    .selectAll()
    .where((eb) =>
      eb.or([
        eb('last_used_at', '<', cutoffs.before),
        eb.and([eb('established_at', 'is', null), eb('last_used_at', '<', cutoffs.unusedBefore)]),
      ]),
    )
    .execute();
  const liveSet = new Set(live.map((l) => `${l.tenant_id}\0${l.label}`));
  const released: LeaseRow[] = [];
  for (const s of stale) {
    if (liveSet.has(`${s.tenant_id}\0${s.label}`)) continue;
    // Only if nobody used it meanwhile.
    const r = await db
      .deleteFrom('leases')
      .where('tenant_id', '=', s.tenant_id)
      .where('label', '=', s.label)
      .where('last_used_at', '=', s.last_used_at)
      .executeTakeFirst();
    if (Number(r.numDeletedRows) > 0) released.push(s);
  }
  return released;
}

export async function publishNodeForwards(
  db: Kysely<Database>,
  nodeId: string,
  rows: DirectoryRow[],
  staleBefore: string,
): Promise<void> {
  await db.transaction().execute(async (tx) => {
    const keep = new Set(rows.map((r) => `${r.tenant_id}\0${r.label}`));
    const mine = await tx
      .selectFrom('forwards')
      .select(['tenant_id', 'label', 'updated_at'])
      .where('node_id', '=', nodeId)
      .execute();
    for (const m of mine) {
      if (keep.has(`${m.tenant_id}\0${m.label}`) || m.updated_at >= staleBefore) continue;
      await tx
        .deleteFrom('forwards')
        .where('node_id', '=', nodeId)
        .where('tenant_id', '=', m.tenant_id)
        .where('label', '=', m.label)
        .where('updated_at', '<', staleBefore)
        .execute();
    }
    for (const r of rows) {
      await tx
        .insertInto('forwards')
        .values(r)
        .onConflict((oc) =>
          oc
            .columns(['tenant_id', 'label', 'node_id'])
            .doUpdateSet({ port: r.port, connectors: r.connectors, updated_at: r.updated_at }),
        )
        .execute();
    }
  });
}
