import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { Client } from 'ssh2';
import { startClusterMembers } from '../helpers/cluster.js';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { echoLogin, type ForwardJson, forwardIn, forwardsOf } from '../helpers/echo-logins.js';
import type { TestGateway } from '../helpers/gateway.js';
import { startHaproxy, type TestHaproxy } from '../helpers/haproxy.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { startHttpServer, type TestServer, tcpExchange } from '../helpers/servers.js';
import { waitFor } from '../helpers/util.js';

/** An SSH login to a member at `host` whose forwarded connections echo what they receive. */
const login = (host: string, port: number, username: string, keyFile: string) =>
  echoLogin(port, username, keyFile, { host });

const echo = async (host: string, port: number, text: string) =>
  (await tcpExchange(port, text, text.length, host)).toString();

/**
 * The first exchange through a lease port on a member: a member's view may list a forward a
 * moment before that member's workers (which sync on their own) listen on its port there.
 */
const reachable = (host: string, port: number, text: string) =>
  waitFor(async () => ((await echo(host, port, text).catch(() => '')) === text ? true : null), {
    timeout: 15_000,
    what: `${host}:${port} answering`,
  });

const online = (fs: ForwardJson[]) => fs.filter((f) => f.state === 'online');

/** Process ids of a member's workers, from its primary's start line in gateway.json. */

describe('cluster of two members with workers: 2 each', () => {
  const ips = ['127.0.0.2', '127.0.0.3'];
  const QUOTA = 3;
  let postgres: TestPostgres;
  let storeUrl: string;
  let members: TestGateway[] = [];
  let otherKey: string;
  let acmeKey: string;
  const others: Array<{ client: Client; member: number }> = [];
  const acme: Client[] = [];

  before(async () => {
    postgres = await startPostgres();
    storeUrl = await postgres.newDatabase();
    members = await startClusterMembers({
      store: storeUrl,
      ips,
      ports: 40,
      workers: 2,
      cluster: { dead_after: '3s' },
    });
    otherKey = await members[0]!.addTenant('other');
    acmeKey = await members[1]!.addTenant('acme', ['--ports', String(QUOTA)]);
  });

  let lb: TestHaproxy | undefined;
  let web: TestServer | undefined;
  let conn: TestConnector | undefined;

  after(async () => {
    await conn?.stop();
    await lb?.stop();
    await web?.close();
    for (const c of [...others.map((o) => o.client), ...acme]) c.end();
    for (const m of members) await m.stop();
    await postgres?.stop();
  });

  test('every worker is a node of the directory; each forward answers on both members’ lease ports, whichever worker of whichever member serves it', async () => {
    // Four logins per member: the primary spreads them over its two workers.
    for (const [i, m] of members.entries())
      for (let k = 0; k < 4; k++)
        others.push({ client: await login(ips[i]!, m.sshPort, 'other', otherKey), member: i });
    const granted = await Promise.all(others.map((o, i) => forwardIn(o.client, `g/r${i}`)));
    for (const g of granted) assert.equal(g.err, undefined, g.err?.message);
    // Both members list all eight, each with the worker that serves it.
    for (const m of members) {
      const forwards = await waitFor(
        async () => {
          const f = online(await forwardsOf(m, 'other'));
          return f.length === 8 && f.every((x) => x.node) ? f : null;
        },
        { timeout: 15_000, what: 'eight forwards online in the view of every member' },
      );
      assert.deepEqual(
        [...new Set(forwards.map((f) => f.node))].sort(),
        ['gw1/worker-1', 'gw1/worker-2', 'gw2/worker-1', 'gw2/worker-2'],
        'forwards on every worker of both members',
      );
    }
    const forwards = online(await forwardsOf(members[0]!, 'other'));
    // Each lease port on each member: served by the worker there, another worker of the member
    // (over the relay between workers), or a worker of the other member (over the cluster relay).
    for (const f of forwards)
      for (const ip of ips) {
        await reachable(ip, f.port, 'first\n');
        for (let k = 0; k < 3; k++) {
          const text = `${f.label} via ${ip} #${k}\n`;
          assert.equal(await echo(ip, f.port, text), text);
        }
      }
  });

  test('the quota holds across members and their workers: logins on both asking for more than the quota at once get exactly the quota', async () => {
    for (const [i, m] of members.entries())
      for (let k = 0; k < 2; k++) acme.push(await login(ips[i]!, m.sshPort, 'acme', acmeKey));
    const results = await Promise.all(
      acme.flatMap((c, ci) => [0, 1, 2].map((k) => forwardIn(c, `q/c${ci}-${k}`))),
    );
    const ok = results.filter((r) => !r.err);
    assert.equal(ok.length, QUOTA, `exactly ${QUOTA} of ${results.length} granted`);
    for (const r of results.filter((x) => x.err)) assert.match(r.err!.message, /Unable to bind/);
    const forwards = await waitFor(
      async () => {
        const f = online(await forwardsOf(members[0]!, 'acme'));
        return f.length === QUOTA ? f : null;
      },
      { timeout: 15_000, what: `${QUOTA} acme forwards online` },
    );
    assert.equal(forwards.length, QUOTA);
    assert.ok(
      members.some((m) => m.output.lines.some((l) => /quota exceeded \(3 of 3 in use\)/.test(l))),
      'refusals logged with the reason',
    );
  });

  test('removing a tenant on one member ends its sessions on every worker of both members within 1 s; another tenant is untouched', async () => {
    const closed = acme.map((c) => new Promise<number>((r) => c.once('close', () => r(Date.now()))));
    const r = await members[0]!.tether(['tenants', 'remove', 'acme']);
    assert.equal(r.code, 0, r.stderr);
    // measured from the moment the CLI had its answer (the removal is committed then)
    const answeredAt = Date.now();
    const at = await Promise.race([
      Promise.all(closed),
      new Promise<never>((_, rej) =>
        setTimeout(() => rej(new Error('sessions still open after 10 s')), 10_000),
      ),
    ]);
    for (const t of at)
      assert.ok(t - answeredAt < 1_000, `a session closed ${t - answeredAt} ms after the removal`);
    const other = online(await forwardsOf(members[1]!, 'other'));
    assert.equal(other.length, 8, "the other tenant's forwards stay");
    for (const f of other) for (const ip of ips) assert.equal(await echo(ip, f.port, 'still\n'), 'still\n');
  });

  test('kill -9 of a worker of one member: restarted; its forwards leave both members’ views, the rest keep answering on both members', async () => {
    const gw2 = members[1]!;
    const pids = gw2.workerPids();
    assert.equal(pids.length, 2, 'two worker pids in gateway.json');
    const from = gw2.output.lines.length;
    process.kill(pids[0]!, 'SIGKILL');
    await gw2.output.wait(/"event":"gateway.worker_exited","worker":1/, 10_000, from);
    await gw2.output.wait(/"event":"gateway.worker_started","worker":1/, 20_000, from);
    // the killed worker's sessions are gone: the other member stops relaying to them
    const left = await waitFor(
      async () => {
        const f = online(await forwardsOf(members[0]!, 'other'));
        return f.every((x) => x.node !== 'gw2/worker-1') ? f : null;
      },
      { timeout: 15_000, what: "gw2/worker-1's forwards out of gw1's view" },
    );
    const lost =
      others.filter((o) => o.member === 1).length - left.filter((f) => f.node?.startsWith('gw2/')).length;
    assert.ok(lost >= 1, 'the killed worker carried at least one session');
    for (const f of left) for (const ip of ips) assert.equal(await echo(ip, f.port, 'after\n'), 'after\n');
    // a new login to that member is served (by either worker) and reached from both members
    const again = await login(ips[1]!, gw2.sshPort, 'other', otherKey);
    others.push({ client: again, member: 1 });
    const g = await forwardIn(again, 'g/again');
    assert.equal(g.err, undefined, g.err?.message);
    await waitFor(
      async () => online(await forwardsOf(members[0]!, 'other')).some((f) => f.label === 'g/again'),
      {
        timeout: 15_000,
        what: 'the new forward in gw1’s view',
      },
    );
    for (const ip of ips) {
      await reachable(ip, g.port!, 'first\n');
      assert.equal(await echo(ip, g.port!, 'new\n'), 'new\n');
    }
  });

  test('a member that crashed as one process and comes back with workers: the rows its single process left leave the directory', async () => {
    const gw1 = members[0]!;
    // a lease whose session is gone (the killed worker's above): a crashed single process's row names one
    const gone = (await forwardsOf(members[1]!, 'other')).find((f) => f.state !== 'online');
    assert.ok(gone, 'a forward left offline by the killed worker');
    await gw1.kill('SIGKILL'); // its workers see their primary gone and stop
    // what a single-process gw1 killed a moment ago leaves: its forward's row, and its node's
    // (kept fresh here, so that no member reaps it while gw1 restarts)
    const db = new pg.Client({ connectionString: storeUrl });
    await db.connect();
    try {
      const later = new Date(Date.now() + 60_000).toISOString();
      await db.query('UPDATE nodes SET heartbeat_at = $1 WHERE node_id = $2', [later, 'gw1']);
      await db.query(
        'INSERT INTO forwards (tenant_id, label, node_id, port, connectors, updated_at) VALUES ($1, $2, $3, $4, 1, $5)',
        ['other', gone.label, 'gw1', gone.port, new Date().toISOString()],
      );
    } finally {
      await db.end();
    }
    const stale = async () =>
      (await forwardsOf(members[1]!, 'other')).some(
        (f) => f.label === gone.label && f.state === 'online' && f.node === 'gw1',
      );
    await waitFor(async () => ((await stale()) ? true : null), {
      timeout: 15_000,
      what: 'the stale row in gw2’s view (it counts while gw1 looks alive)',
    });
    await gw1.restart();
    await waitFor(async () => ((await stale()) ? null : true), {
      timeout: 15_000,
      what: 'the stale row gone once gw1 is back with its workers',
    });
    // and gw1 serves again: the other tenant's forwards on gw2 answer through it
    const f = online(await forwardsOf(members[1]!, 'other')).find((x) => x.node?.startsWith('gw2/'));
    assert.ok(f, 'a forward served by gw2');
    await reachable(ips[0]!, f.port, 'back\n');
  });

  test('a rolling restart: SIGTERM to the member that holds a connector drains its workers, the connector moves to the other member, and the lease port there answers throughout', async () => {
    lb = await startHaproxy(members.map((m, i) => ({ name: `gw${i + 1}`, host: ips[i]!, port: m.sshPort })));
    web = await startHttpServer('inside');
    const key = await members[0]!.addTenant('roll');
    conn = await startConnector({
      gateway: `127.0.0.1:${lb.port}`,
      tenant: 'roll',
      keyFile: key,
      config: { gateway_fingerprint: members[0]!.hostFingerprint },
      repositories: { g: { web: `http://127.0.0.1:${web.port}` } },
    });
    const port = await conn.leasePort('g/web');
    const ownerNode = await waitFor(
      async () =>
        online(await forwardsOf(members[0]!, 'roll')).find((f) => f.label === 'g/web')?.node ?? null,
      { timeout: 15_000, what: 'the forward online' },
    );
    const owner = Number(ownerNode.slice(2, 3)) - 1;
    const other = 1 - owner;
    const url = `http://${ips[other]}:${port}/x`;
    await waitFor(async () => ((await fetch(url).catch(() => null))?.status === 200 ? true : null), {
      timeout: 15_000,
      what: 'the lease port answering on the other member',
    });
    // callers on the other member's lease port, one after another, through the whole drain: each
    // a new connection (a kept-alive one relayed to the drained member ends with it, as any does)
    let stop = false;
    let served = 0;
    const failures: string[] = [];
    const call = () =>
      new Promise<string>((resolve, reject) => {
        const req = http.get(url, { agent: false, timeout: 5_000 }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => {
            body += c.toString();
          });
          res.on('end', () => resolve(`${res.statusCode} ${body}`));
          res.on('error', reject);
        });
        req.on('timeout', () => req.destroy(new Error('no answer within 5 s')));
        req.on('error', reject);
      });
    const callers = (async () => {
      while (!stop) {
        try {
          const answer = await call();
          if (/^200 .*from inside/.test(answer)) served++;
          else failures.push(answer.slice(0, 80));
        } catch (err) {
          failures.push(`${(err as Error).message} at ${Date.now()}`);
        }
      }
    })();
    const drained = members[owner]!;
    await drained.kill('SIGTERM');
    assert.equal(drained.process.exitCode, 0, 'the drained member exits 0');
    const moved = await waitFor(
      async () =>
        online(await forwardsOf(members[other]!, 'roll')).find(
          (f) => f.label === 'g/web' && f.node?.startsWith(`gw${other + 1}/`),
        ) ?? null,
      { timeout: 20_000, what: 'the forward on a worker of the other member' },
    );
    assert.equal(moved.port, port, 'the same lease port');
    const before = served;
    await waitFor(async () => (served >= before + 5 ? true : null), {
      timeout: 10_000,
      what: 'callers served after the move',
    }).catch((err: Error) => {
      stop = true;
      throw new Error(
        `${err.message}: served ${served}, failures ${JSON.stringify(failures.slice(-5))} of ${failures.length}`,
      );
    });
    stop = true;
    await callers;
    assert.deepEqual(failures, [], `${served} callers served; none failed`);
  });
});
