import pg from 'pg';
import { Kysely, PostgresDialect } from '../kysely-module.js';
import { KyselyStore, type Database as Schema } from '../kysely-store.js';
import { migrateToLatest } from '../migrations/index.js';

/** PostgreSQL, for clusters: the same schema and migrations as SQLite. */
export async function openPostgresStore(url: string): Promise<KyselyStore> {
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  const db = new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) });
  await migrateToLatest(db as unknown as Kysely<unknown>);
  return new KyselyStore('postgres', db);
}
