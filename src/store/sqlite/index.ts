import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { CompiledQuery, Kysely, SqliteDialect } from '../kysely-module.js';
import { KyselyStore, type Database as Schema } from '../kysely-store.js';
import { migrateToLatest } from '../migrations/index.js';

/**
 * Transactions take SQLite's write lock when they begin (`BEGIN IMMEDIATE`), not at their first
 * write: with several gateway processes on one file (`workers`), two transactions that read and
 * then write (the tenant lock's quota check and grant) would otherwise both read, and the second
 * to write fail with SQLITE_BUSY instead of waiting its turn (`busy_timeout`) and reading the
 * first one's grant.
 */
class ImmediateSqliteDialect extends SqliteDialect {
  override createDriver() {
    const driver = super.createDriver();
    driver.beginTransaction = async (connection) => {
      await connection.executeQuery(CompiledQuery.raw('begin immediate'));
    };
    return driver;
  }
}

/** The embedded default: one SQLite file in WAL mode inside the data dir. */
export async function openSqliteStore(dataDir: string, fileName = 'tether.db'): Promise<KyselyStore> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const sqlite = new Database(join(dataDir, fileName));
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = NORMAL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  const db = new Kysely<Schema>({ dialect: new ImmediateSqliteDialect({ database: sqlite }) });
  await migrateToLatest(db as unknown as Kysely<unknown>);
  return new KyselyStore('sqlite', db);
}
