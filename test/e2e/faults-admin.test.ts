import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { generateKeyPair } from '../../src/core/ssh-keys.js';
import { openSqliteStore } from '../../src/store/sqlite/index.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

const TENANTS = 500; // a create and a quota change each: 1,000 writes
const CONCURRENCY = 16;
const KILL_AFTER = 400; // acknowledged writes

type Write = { kind: 'create' | 'quota'; tenant: string; quota: number };
type Result = 'acked' | 'unknown';

/**
 * One admin write; "acked" only for the success status, "unknown" when the gateway went away.
 * A retried create may find its first attempt stored (409).
 */
async function write(gw: TestGateway, w: Write, publicKey: string, retry = false): Promise<Result> {
  const [method, path, body] =
    w.kind === 'create'
      ? ['POST', '/v1/tenants', { id: w.tenant, public_key: publicKey, quota: w.quota }]
      : ['PATCH', `/v1/tenants/${w.tenant}`, { quota: w.quota }];
  try {
    const res = await fetch(`${gw.adminUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${gw.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    await res.text();
    const ok = w.kind === 'create' ? (retry ? [201, 409] : [201]) : [200];
    assert.ok(ok.includes(res.status), `${method} ${path}: ${res.status}`);
    return 'acked';
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    return 'unknown';
  }
}

describe('faults: kill -9 of the gateway during 1,000 admin writes', () => {
  let gw: TestGateway;
  after(async () => {
    await gw?.stop();
  });

  test('every acknowledged write is there after the restart; the database passes its integrity check', async (t) => {
    gw = await startGateway();
    const publicKey = generateKeyPair('faults').publicKey;
    const jobs: Write[][] = Array.from({ length: TENANTS }, (_, i) => [
      { kind: 'create', tenant: `w${i}`, quota: 1 + (i % 50) },
      { kind: 'quota', tenant: `w${i}`, quota: 100 + (i % 50) },
    ]);
    const results = new Map<Write, Result>();
    let acked = 0;
    let killed: Promise<void> | undefined;
    let next = 0;

    /** Workers take tenants in order; a tenant whose write was cut off by the kill stops there. */
    const runWorkers = () =>
      Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (next < jobs.length && !killed) {
            const job = jobs[next++]!;
            for (const w of job) {
              const r = await write(gw, w, publicKey);
              results.set(w, r);
              if (r === 'unknown') break;
              acked++;
              if (acked === KILL_AFTER) killed = gw.kill('SIGKILL');
            }
          }
        }),
      );

    const t0 = Date.now();
    await runWorkers();
    await killed;
    const ackedAtKill = acked;
    const cut = [...results.values()].filter((r) => r === 'unknown').length;
    t.diagnostic(
      `${ackedAtKill} writes acknowledged before the kill (${Date.now() - t0} ms); ${cut} cut off`,
    );
    assert.ok(ackedAtKill >= KILL_AFTER);

    // the file as the kill left it: SQLite recovers its WAL and finds nothing broken
    const raw = await openSqliteStore(gw.dataDir);
    assert.equal(await raw.integrityCheck(), 'ok');
    await raw.close();

    // after the restart: the writes the kill cut off are retried, then the rest of the 1,000
    await gw.restart();
    killed = undefined;
    for (const job of jobs) {
      const from = job.findIndex((w) => results.get(w) === 'unknown');
      if (from < 0) continue;
      for (const w of job.slice(from)) {
        const r = await write(gw, w, publicKey, true);
        assert.equal(r, 'acked', `retry of ${w.kind} ${w.tenant}`);
        results.set(w, r);
        acked++;
      }
    }
    await runWorkers();
    const attempted = results.size;
    t.diagnostic(`${acked} acknowledged of ${attempted} writes in all`);

    const res = await gw.api('GET', '/v1/tenants');
    assert.equal(res.status, 200);
    const stored = new Map(
      (res.json as { tenants: Array<{ id: string; quota: number; keys: unknown[] }> }).tenants.map((x) => [
        x.id,
        x,
      ]),
    );
    let withoutKey = 0;
    for (const [create, quota] of jobs) {
      const c = results.get(create!);
      const q = results.get(quota!);
      const row = stored.get(create!.tenant);
      if (c === 'acked') assert.ok(row, `acknowledged create of ${create!.tenant} is there`);
      if (q === 'acked') assert.equal(row?.quota, quota!.quota, `acknowledged quota of ${quota!.tenant}`);
      else if (c === 'acked') assert.ok([create!.quota, quota!.quota].includes(row!.quota));
      if (row && row.keys.length === 0) withoutKey++;
    }
    t.diagnostic(
      `${stored.size} tenants stored; ${withoutKey} without a key (a create cut off between its two statements)`,
    );
    assert.equal(attempted, 2 * TENANTS, 'all 1,000 writes ran');
    assert.ok([...results.values()].every((r) => r === 'acked'));
    assert.equal(stored.size, TENANTS);

    await gw.stop();
    const after = await openSqliteStore(gw.dataDir);
    assert.equal(await after.integrityCheck(), 'ok');
    await after.close();
  });
});
