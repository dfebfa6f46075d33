import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startClusterMembers } from '../helpers/cluster.js';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import type { TestGateway } from '../helpers/gateway.js';
import { startHaproxy, type TestHaproxy } from '../helpers/haproxy.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { startHttpServer, type TestServer } from '../helpers/servers.js';
import { nextEvent, waitFor } from '../helpers/util.js';

interface TenantJson {
  forwards: Array<{ label: string; port: number; state: string; node: string | null }>;
}

async function get(url: string): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(3_000) });
  assert.equal(res.status, 200);
  return res.text();
}

describe('cluster: three gateways, PostgreSQL, haproxy in front', () => {
  let pg: TestPostgres;
  let url: string;
  const members: TestGateway[] = [];
  let lb: TestHaproxy;
  let web: TestServer;
  let conn: TestConnector;
  const ips = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];

  before(async () => {
    pg = await startPostgres();
    url = await pg.newDatabase();
    members.push(...(await startClusterMembers({ store: url, ips, ports: 10 })));
    lb = await startHaproxy(members.map((m, i) => ({ name: `gw${i + 1}`, host: ips[i]!, port: m.sshPort })));
    web = await startHttpServer('inside');
  });

  after(async () => {
    await conn?.stop();
    await lb?.stop();
    for (const m of members) await m.stop();
    await web?.close();
    await pg?.stop();
  });

  test('members share one identity: host key and admin token', () => {
    assert.equal(new Set(members.map((m) => m.hostFingerprint)).size, 1);
    assert.equal(new Set(members.map((m) => m.adminToken)).size, 1);
  });

  test('a connector through the load balancer is reachable on every member; admin changes reach every member within 1 s; kill -9 of its member moves it with the same port', async (t) => {
    const add = await members[0]!.tether(['tenants', 'add', 'acme']);
    assert.equal(add.code, 0, add.stderr);
    const keyFile = `${members[0]!.dir}/acme.key`;
    const { writeFileSync } = await import('node:fs');
    writeFileSync(keyFile, add.stdout, { mode: 0o600 });
    conn = await startConnector({
      gateway: `127.0.0.1:${lb.port}`,
      tenant: 'acme',
      keyFile,
      config: { gateway_fingerprint: members[0]!.hostFingerprint },
      repositories: { grp: { web: `http://127.0.0.1:${web.port}` } },
    });
    const port = await conn.leasePort('grp/web');

    // Every member serves the lease port (the owner directly, the others by relaying).
    for (const ip of ips) {
      const body = await waitFor(() => get(`http://${ip}:${port}/x`).catch(() => ''), {
        what: `lease on ${ip}`,
      });
      assert.equal(body, 'hello from inside /x\n');
    }
    // Every member lists the forward with its owner.
    const listing = (await members[2]!.api('GET', '/v1/tenants/acme')).json as { tenant: TenantJson };
    // a member's node, or one of its workers' (`gw2/worker-1`) when TETHER_TEST_WORKERS is set
    const owner = listing.tenant.forwards[0]!.node!;
    assert.match(owner, /^gw[123](\/worker-\d+)?$/);
    const listed = await members[1]!.tether(['tenants', 'list']);
    assert.match(
      listed.stdout,
      new RegExp(
        `grp/web\\s+http://127\\.0\\.0\\.1:${web.port}\\s+${port}\\s+online\\s+\\d+\\s+\\d+\\s+${owner}`,
      ),
    );

    // An admin change on a member that does not hold the session cuts it within 1 s.
    const ownerIdx = Number(owner.slice(2, 3)) - 1;
    const other = members[(ownerIdx + 1) % 3]!;
    const sock = net.connect({ host: ips[ownerIdx]!, port });
    await nextEvent(sock, 'connect');
    const closed = new Promise<number>((resolve) => {
      sock.on('error', () => {});
      sock.once('close', () => resolve(Date.now()));
    });
    const change = await other.api('PATCH', '/v1/tenants/acme', { quota: 0 });
    // From the moment the change is acknowledged (committed): the PATCH's own time on a busy
    // machine is not the propagation the promise is about. A cut before the answer counts as 0.
    const ackAt = Date.now();
    assert.equal(change.status, 200);
    const cutMs = Math.max(0, (await closed) - ackAt);
    assert.ok(cutMs < 1_000, `connection cut ${cutMs} ms after the change was acknowledged`);
    assert.equal((await members[(ownerIdx + 2) % 3]!.tether(['tenants', 'change', '20', 'acme'])).code, 0);
    const newPort = await conn.leasePort('grp/web', 20_000);
    assert.equal(newPort, port);
    const owner2 = await waitFor(
      async () => {
        const j = (await other.api('GET', '/v1/tenants/acme')).json as { tenant: TenantJson };
        return j.tenant.forwards[0]?.state === 'online' ? j.tenant.forwards[0].node : undefined;
      },
      { what: 'forward back online', timeout: 20_000 },
    );

    // kill -9 the member that holds the connector during traffic.
    const victim = Number(owner2!.slice(2, 3)) - 1;
    const survivors = ips.filter((_, i) => i !== victim);
    const t0 = Date.now();
    await members[victim]!.kill('SIGKILL');
    await waitFor(
      async () => {
        for (const ip of survivors) await get(`http://${ip}:${port}/after`);
        return true;
      },
      { what: 'lease served again by the survivors', timeout: 20_000, interval: 50 },
    );
    const recoveryMs = Date.now() - t0;
    t.diagnostic(`recovery after kill -9 of ${owner2}: ${recoveryMs} ms`);
    assert.ok(recoveryMs < 10_000, `recovered in ${recoveryMs} ms`);
    const survivor = members.find((_, i) => i !== victim)!;
    const after = (await survivor.api('GET', '/v1/tenants/acme')).json as {
      tenant: TenantJson & { quota: number };
    };
    assert.equal(after.tenant.quota, 20, 'store contents intact');
    assert.equal(after.tenant.forwards[0]?.port, port, 'same lease port');
    assert.notEqual(after.tenant.forwards[0]?.node, owner2);
    assert.doesNotMatch(conn.output.text() + conn.stderr.text(), /already in use/);
  });
});
