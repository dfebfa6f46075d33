import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect } from '../kysely-module.js';
import { KyselyStore, type Database as Schema } from '../kysely-store.js';
import { migrateToLatest } from '../migrations/index.js';

/** The embedded default: one SQLite file in WAL mode inside the data dir. */
export async function openSqliteStore(dataDir: string, fileName = 'tether.db'): Promise<KyselyStore> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const sqlite = new Database(join(dataDir, fileName));
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = NORMAL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  const db = new Kysely<Schema>({ dialect: new SqliteDialect({ database: sqlite }) });
  await migrateToLatest(db as unknown as Kysely<unknown>);
  return new KyselyStore('sqlite', db);
}
