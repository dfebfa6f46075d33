import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { startHttpServer, type TestServer } from '../helpers/servers.js';
import { freePortRange, waitFor } from '../helpers/util.js';

/** A proposal made on one cluster member reaches a connector logged in to another. */
describe('managed repositories in a cluster (PostgreSQL)', () => {
  let pg: TestPostgres;
  const members: TestGateway[] = [];
  let web: TestServer;
  let conn: TestConnector;

  before(async () => {
    pg = await startPostgres();
    const url = await pg.newDatabase();
    const range = await freePortRange(10);
    for (const [i, ip] of ['127.0.0.2', '127.0.0.3'].entries()) {
      members.push(
        await startGateway({
          config: {
            store: url,
            tunnel: { listen: `${ip}:0` },
            admin: { listen: `${ip}:0` },
            forwards: { bind: ip, ports: `${range.low}-${range.high}` },
            cluster: { node_id: `gw${i + 1}`, advertise: ip, heartbeat: '250ms', dead_after: '1500ms' },
          },
        }),
      );
    }
    web = await startHttpServer('inside');
  });

  after(async () => {
    await conn?.stop();
    for (const m of members) await m.stop();
    await web?.close();
    await pg?.stop();
  });

  test('proposed on gw1, served by the connector of gw2, its answer visible on gw1', async () => {
    const [gw1, gw2] = members as [TestGateway, TestGateway];
    const add = await gw1.tether(['tenants', 'add', 'acme']);
    assert.equal(add.code, 0, add.stderr);
    const keyFile = `${gw1.dir}/acme.key`;
    writeFileSync(keyFile, add.stdout, { mode: 0o600 });
    conn = await startConnector({
      gateway: `127.0.0.3:${gw2.sshPort}`,
      tenant: 'acme',
      keyFile,
      config: { managed: { allow: [{ cidr: '127.0.0.1/32', ports: String(web.port), services: ['http'] }] } },
    });
    const r = await gw1.tether([
      'tenants',
      'repos',
      'add',
      'acme',
      'grp/web',
      `http://127.0.0.1:${web.port}`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const port = await conn.leasePort('grp/web', 30_000);
    // the lease port is bound on the member that owns the session (127.0.0.3)
    const answer = await fetch(`http://127.0.0.3:${port}/`, { signal: AbortSignal.timeout(10_000) });
    assert.equal(answer.status, 200);
    assert.match(await answer.text(), /inside/);
    await waitFor(
      async () => {
        const l = await gw1.tether(['tenants', 'repos', 'list', 'acme']);
        return /grp\/web\s+http:\/\/127\.0\.0\.1:\d+\s+.*serving/.test(l.stdout);
      },
      { timeout: 20_000, what: 'gw1 to show the answer of the connector on gw2' },
    );
    const rm = await gw1.tether(['tenants', 'repos', 'remove', 'acme', 'grp/web']);
    assert.equal(rm.code, 0, rm.stderr);
    await waitFor(async () => (await conn.repo('grp/web')) === undefined, {
      timeout: 20_000,
      what: 'the connector on gw2 to drop it',
    });
  });
});
