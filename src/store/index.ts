import type { Store } from './types.js';

export type { Store } from './types.js';

/** Opens the store a gateway.yaml `store:` names: "sqlite" (in the data dir) or a postgres URL. */
export async function openStore(spec: string, dataDir: string): Promise<Store> {
  if (spec === 'sqlite') {
    const { openSqliteStore } = await import('./sqlite/index.js');
    return openSqliteStore(dataDir);
  }
  const { openPostgresStore } = await import('./postgres/index.js');
  return openPostgresStore(spec);
}
