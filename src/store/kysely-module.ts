import { createRequire } from 'node:module';
import type * as K from 'kysely';

/**
 * kysely's CommonJS build, for every value the store takes from kysely (its types still come from
 * `import type … from 'kysely'`: the same declarations). The ESM build is 263 modules, and Node
 * keeps a module record, a namespace and a loader job for each: the CommonJS build costs the
 * gateway about 2 MiB less RSS and starts it about a second sooner (docs/performance.md, "A lean
 * gateway"). Import kysely's values from here, never from 'kysely': both builds would be loaded.
 */
const kysely = createRequire(import.meta.url)('kysely') as typeof K;

export const { Kysely, SqliteDialect, PostgresDialect, Migrator, sql, CompiledQuery } = kysely;
export type Kysely<DB> = K.Kysely<DB>;
