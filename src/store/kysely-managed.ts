import type { Kysely } from 'kysely';
import type { Database } from './kysely-store.js';
import type { ManagedRepoRow, ManagedStateRow } from './types.js';

/** Managed repositories of KyselyStore: proposals and what each connector made of them. */

export function listManagedRepos(db: Kysely<Database>, tenantId: string): Promise<ManagedRepoRow[]> {
  return db
    .selectFrom('managed_repos')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .orderBy('label')
    .execute();
}

export async function putManagedRepo(db: Kysely<Database>, row: ManagedRepoRow): Promise<void> {
  await db.transaction().execute(async (tx) => {
    await tx
      .insertInto('managed_repos')
      .values(row)
      .onConflict((oc) =>
        oc.columns(['tenant_id', 'label']).doUpdateSet({ uri: row.uri, updated_at: row.updated_at }),
      )
      .execute();
    await tx
      .deleteFrom('managed_repo_states')
      .where('tenant_id', '=', row.tenant_id)
      .where('label', '=', row.label)
      .where('uri', '!=', row.uri)
      .execute();
  });
}

export async function deleteManagedRepo(
  db: Kysely<Database>,
  tenantId: string,
  label: string,
): Promise<boolean> {
  return db.transaction().execute(async (tx) => {
    await tx
      .deleteFrom('managed_repo_states')
      .where('tenant_id', '=', tenantId)
      .where('label', '=', label)
      .execute();
    const r = await tx
      .deleteFrom('managed_repos')
      .where('tenant_id', '=', tenantId)
      .where('label', '=', label)
      .executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  });
}

export function listManagedStates(db: Kysely<Database>, tenantId: string): Promise<ManagedStateRow[]> {
  return db
    .selectFrom('managed_repo_states')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .orderBy('label')
    .orderBy('connector')
    .execute();
}

export async function putManagedState(db: Kysely<Database>, row: ManagedStateRow): Promise<void> {
  await db
    .insertInto('managed_repo_states')
    .values(row)
    .onConflict((oc) =>
      oc.columns(['tenant_id', 'label', 'connector']).doUpdateSet({
        uri: row.uri,
        state: row.state,
        reason: row.reason,
        hostname: row.hostname,
        updated_at: row.updated_at,
      }),
    )
    .execute();
}

export async function pruneManagedStates(
  db: Kysely<Database>,
  tenantId: string,
  label: string,
  keep: number,
): Promise<number> {
  const rows = await db
    .selectFrom('managed_repo_states')
    .select(['connector', 'updated_at'])
    .where('tenant_id', '=', tenantId)
    .where('label', '=', label)
    .orderBy('updated_at', 'desc')
    .execute();
  const old = rows.slice(keep).map((r) => r.connector);
  if (old.length === 0) return 0;
  await db
    .deleteFrom('managed_repo_states')
    .where('tenant_id', '=', tenantId)
    .where('label', '=', label)
    .where('connector', 'in', old)
    .execute();
  return old.length;
}
