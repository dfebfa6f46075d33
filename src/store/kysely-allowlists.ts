import type { Kysely } from 'kysely';
import type { Database } from './kysely-store.js';
import type { AllowlistRow } from './types.js';

/** Source-address allowlists of KyselyStore (table source_allowlists). */

export async function listAllowlists(db: Kysely<Database>, tenantId?: string): Promise<AllowlistRow[]> {
  let q = db.selectFrom('source_allowlists').selectAll();
  if (tenantId !== undefined) q = q.where('tenant_id', '=', tenantId);
  return q.orderBy('tenant_id').orderBy('label').execute();
}

export async function setAllowlist(db: Kysely<Database>, row: AllowlistRow): Promise<void> {
  if (row.allow_from === null && row.tunnel_from === null) {
    await db
      .deleteFrom('source_allowlists')
      .where('tenant_id', '=', row.tenant_id)
      .where('label', '=', row.label)
      .execute();
    return;
  }
  const { tenant_id: _t, label: _l, ...rest } = row;
  await db
    .insertInto('source_allowlists')
    .values(row)
    .onConflict((oc) => oc.columns(['tenant_id', 'label']).doUpdateSet(rest))
    .execute();
}
