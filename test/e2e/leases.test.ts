import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import ssh2, { type Client } from 'ssh2';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startHttpServer, type TestServer } from '../helpers/servers.js';
import { run, waitFor } from '../helpers/util.js';

/** Logs in with plain ssh2 (an attacker's client, not our connector). */
function login(sshPort: number, username: string, keyFile: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const c = new ssh2.Client();
    c.once('ready', () => resolve(c));
    c.once('error', reject);
    c.connect({
      host: '127.0.0.1',
      port: sshPort,
      username,
      privateKey: readFileSync(keyFile),
      readyTimeout: 20_000,
    });
  });
}

const forwardIn = (c: Client, label: string) =>
  new Promise<{ err?: Error; port?: number }>((r) =>
    c.forwardIn(label, 0, (err, port) => r({ err: err ?? undefined, port })),
  );
const unforwardIn = (c: Client, label: string, port: number) =>
  new Promise<{ err?: Error }>((r) => c.unforwardIn(label, port, (err) => r({ err: err ?? undefined })));

interface TenantJson {
  forwards: Array<{ label: string; port: number; state: string }>;
}

async function get(port: number, path = '/'): Promise<string> {
  const r = await run('curl', ['-sS', '-m', '5', `http://127.0.0.1:${port}${path}`]);
  return r.stdout;
}

describe('leases: one tenant cannot take every lease port', () => {
  const RANGE = 40;
  const QUOTA = 3;
  const MARGIN = 2;
  let gw: TestGateway;
  let hogWeb: TestServer;
  let calmWeb: TestServer;
  let hogKey: string;
  let calmKey: string;
  let hogConn: TestConnector;
  let calmConn: TestConnector | undefined;
  let attacker: Client | undefined;

  const leasesOf = async (tenant: string) =>
    ((await gw.api('GET', `/v1/tenants/${tenant}`)).json as { tenant: TenantJson }).tenant.forwards;

  before(async () => {
    [gw, hogWeb, calmWeb] = await Promise.all([
      startGateway({ ports: RANGE, config: { forwards: { lease_margin: MARGIN } } }),
      startHttpServer('hog'),
      startHttpServer('calm'),
    ]);
    hogKey = await gw.addTenant('hog', ['--ports', String(QUOTA)]);
    calmKey = await gw.addTenant('calm', ['--ports', String(QUOTA)]);
    hogConn = await startConnector({
      gateway: gw.sshPort,
      tenant: 'hog',
      keyFile: hogKey,
      repositories: { grp: { web: `http://127.0.0.1:${hogWeb.port}` } },
    });
  });

  after(async () => {
    attacker?.end();
    await calmConn?.stop();
    await hogConn?.stop();
    await gw?.stop();
    await hogWeb?.close();
    await calmWeb?.close();
  });

  test('forward-and-cancel with fresh labels, more times than the range has ports: the tenant holds at most quota + margin leases, its own live lease keeps its port, another tenant still gets a port that works', async () => {
    const webPort = await hogConn.leasePort('grp/web');
    assert.equal(await get(webPort, '/x'), 'hello from hog /x\n');

    attacker = await login(gw.sshPort, 'hog', hogKey);
    const rounds = RANGE * 2;
    const seen = new Set<number>();
    for (let i = 0; i < rounds; i++) {
      const label = `junk/r${i}`;
      const f = await forwardIn(attacker, label);
      assert.equal(f.err, undefined, `forward ${i} refused: ${f.err?.message}`);
      seen.add(f.port!);
      assert.equal((await unforwardIn(attacker, label, f.port!)).err, undefined);
    }
    const held = await leasesOf('hog');
    assert.ok(held.length <= QUOTA + MARGIN, `hog holds ${held.length} leases: ${JSON.stringify(held)}`);
    assert.ok(seen.size <= QUOTA + MARGIN, `the loop went through ${seen.size} distinct ports`);
    const web = held.find((l) => l.label === 'grp/web');
    assert.equal(web?.port, webPort, 'the live lease stayed');
    assert.equal(web?.state, 'online');

    // The other tenant gets a port, and it carries traffic.
    calmConn = await startConnector({
      gateway: gw.sshPort,
      tenant: 'calm',
      keyFile: calmKey,
      repositories: { grp: { web: `http://127.0.0.1:${calmWeb.port}` } },
    });
    const calmPort = await calmConn.leasePort('grp/web');
    assert.equal(await get(calmPort, '/y'), 'hello from calm /y\n');

    // The releases are counted under their bound, once per burst in the log.
    const metrics = await fetch(`${gw.adminUrl}/metrics`, {
      headers: { authorization: `Bearer ${gw.adminToken}` },
    }).then((r) => r.text());
    const m = /tether_refused_total\{reason="leases_per_tenant"\} (\d+)/.exec(metrics);
    assert.ok(m && Number(m[1]) > 0, 'tether_refused_total{reason="leases_per_tenant"} counts the releases');
    assert.match(gw.output.text(), /"reason":"leases_per_tenant"/);
    assert.match(gw.output.text(), /released to make room for junk\/r\d+: at most 5 leases per tenant/);
  });

  test('a lease in use comes back with the same port after a reconnect and a gateway restart', async () => {
    const webPort = await hogConn.leasePort('grp/web');
    // A label the attacker re-forwards after its churn gets one of its few leases back.
    const again = await forwardIn(attacker!, 'junk/again');
    assert.equal(again.err, undefined);
    assert.equal((await unforwardIn(attacker!, 'junk/again', again.port!)).err, undefined);
    const back = await forwardIn(attacker!, 'junk/again');
    assert.equal(back.port, again.port, 'a recently used lease keeps its port');
    attacker!.end();
    attacker = undefined;

    await gw.restart();
    // The connector reconnects on its own; its repository answers on the same port again.
    await waitFor(async () => (await get(webPort, '/z')) === 'hello from hog /z\n' || undefined, {
      timeout: 30_000,
    });
    assert.equal(await hogConn.leasePort('grp/web', 30_000), webPort);
    const held = await leasesOf('hog');
    assert.ok(held.length <= QUOTA + MARGIN);
    assert.equal(held.find((l) => l.label === 'junk/again')?.port, again.port, 'kept across the restart');
  });
});
