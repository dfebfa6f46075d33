import type { Kysely } from 'kysely';
import type { Database } from './kysely-store.js';
import type { ConnectionRecordRow } from './types.js';

/** Connection audit records of KyselyStore (table connection_audit). */

export async function addConnectionRecords(db: Kysely<Database>, rows: ConnectionRecordRow[]): Promise<void> {
  if (rows.length === 0) return;
  // SQLite takes at most 32766 bound values per statement: 13 columns × 1000 rows stays below.
  for (let i = 0; i < rows.length; i += 1000) {
    await db
      .insertInto('connection_audit')
      .values(rows.slice(i, i + 1000))
      .execute();
  }
}

export async function listConnectionRecords(
  db: Kysely<Database>,
  q: { tenantId: string; since?: string; limit: number },
): Promise<ConnectionRecordRow[]> {
  let query = db.selectFrom('connection_audit').selectAll().where('tenant_id', '=', q.tenantId);
  if (q.since !== undefined) query = query.where('ended_at', '>=', q.since);
  const rows = await query.orderBy('ended_at', 'desc').orderBy('opened_at', 'desc').limit(q.limit).execute();
  // PostgreSQL answers bigint as strings.
  return rows.map((r) => ({
    ...r,
    bytes_in: Number(r.bytes_in),
    bytes_out: Number(r.bytes_out),
    duration_ms: Number(r.duration_ms),
  }));
}

export async function pruneConnectionRecords(db: Kysely<Database>, before: string): Promise<number> {
  const r = await db.deleteFrom('connection_audit').where('ended_at', '<', before).executeTakeFirst();
  return Number(r.numDeletedRows);
}
