import assert from 'node:assert/strict';
import type { Clock } from '../../src/core/clock.js';
import { isTetherError } from '../../src/errors/index.js';
import { silentLogger } from '../../src/log/index.js';
import { openSqliteStore } from '../../src/store/sqlite/index.js';
import type { Store } from '../../src/store/types.js';
import { tempDir } from './util.js';

/** A clock tests move by hand. */
export class FakeClock implements Clock {
  private t: number;
  private timers: Array<{ at: number; fn: () => void; id: number }> = [];
  private nextId = 1;

  constructor(start = Date.parse('2026-01-01T00:00:00Z')) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.push({ at: this.t + ms, fn, id });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((x) => x.id !== handle);
  }

  /** Timers not yet fired. */
  get pending(): number {
    return this.timers.length;
  }

  advance(ms: number): void {
    this.t += ms;
    const due = this.timers.filter((x) => x.at <= this.t).sort((a, b) => a.at - b.at);
    this.timers = this.timers.filter((x) => x.at > this.t);
    for (const x of due) x.fn();
  }
}

export async function tempStore() {
  return openSqliteStore(tempDir('tether-store-'));
}

export const quietLog = silentLogger;

/**
 * Runs a store contract on a PostgreSQL store too: a server of its own for this test file (one
 * fresh database per `open()`), or the contract shown as skipped, with the reason, where
 * PostgreSQL is not installed.
 */
export async function onPostgresToo(
  what: string,
  contract: (name: string, open: () => Promise<Store>) => void,
): Promise<void> {
  const { after, test } = await import('node:test');
  const { startPostgres } = await import('./postgres.js');
  const { openPostgresStore } = await import('../../src/store/postgres/index.js');
  let server: Awaited<ReturnType<typeof startPostgres>>;
  try {
    server = await startPostgres();
  } catch (e) {
    test(`${what} (postgres)`, { skip: `PostgreSQL unavailable: ${(e as Error).message}` }, () => {});
    return;
  }
  after(async () => server.stop());
  contract('postgres', async () => openPostgresStore(await server.newDatabase()));
}

/**
 * The message of the CONFIG_INVALID error `load` throws; the test fails with `accepted` when it
 * throws none, and with the error itself when it throws another.
 */
export function configProblem(load: () => unknown, accepted = 'expected CONFIG_INVALID'): string {
  try {
    load();
  } catch (e) {
    assert.ok(isTetherError(e, 'CONFIG_INVALID'), String(e));
    return e.message;
  }
  assert.fail(accepted);
}
