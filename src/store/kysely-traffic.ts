import type { Kysely } from 'kysely';
import { sql } from './kysely-module.js';
import type { Database } from './kysely-store.js';
import type { TrafficRow } from './types.js';

/** Adds byte counts to the counters of their day, in one transaction (KyselyStore.addTraffic). */
export async function addTraffic(db: Kysely<Database>, rows: TrafficRow[]): Promise<void> {
  if (rows.length === 0) return;
  // One statement may not touch a row twice (PostgreSQL): merge duplicates first.
  const merged = new Map<string, TrafficRow>();
  for (const r of rows) {
    const k = `${r.tenant_id}\0${r.label}\0${r.day}`;
    const m = merged.get(k);
    if (m) {
      m.bytes_in += r.bytes_in;
      m.bytes_out += r.bytes_out;
    } else merged.set(k, { ...r });
  }
  await db.transaction().execute(async (tx) => {
    // Counters of a tenant removed meanwhile are dropped with it.
    const ids = [...new Set(rows.map((r) => r.tenant_id))];
    const known = new Set(
      (await tx.selectFrom('tenants').select('id').where('id', 'in', ids).execute()).map((t) => t.id),
    );
    const values = [...merged.values()].filter((r) => known.has(r.tenant_id));
    for (let i = 0; i < values.length; i += 200) {
      await tx
        .insertInto('traffic')
        .values(values.slice(i, i + 200))
        .onConflict((oc) =>
          oc.columns(['tenant_id', 'label', 'day']).doUpdateSet({
            bytes_in: sql<number>`traffic.bytes_in + excluded.bytes_in`,
            bytes_out: sql<number>`traffic.bytes_out + excluded.bytes_out`,
          }),
        )
        .execute();
    }
  });
}
