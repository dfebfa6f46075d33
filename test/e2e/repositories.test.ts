import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { type SshForward, sshForward } from '../helpers/openssh.js';
import { startEchoServer, startHttpServer, type TestServer } from '../helpers/servers.js';
import { waitFor } from '../helpers/util.js';

interface Repo {
  label: string;
  repository: string;
  address: string;
  port: number;
  state: 'online' | 'offline';
  service: string | null;
  scheme: string | null;
  destination: string | null;
  path: string | null;
  connections: number;
  connectors: number;
  node: string | null;
  /** Each connector serving it, its own limits and its traffic (docs/limits-and-ha.md). */
  endpoints?: Array<{ source: string; state: string; connections: number }>;
  limits?: unknown;
  usage?: { bytes: number };
}

interface Listing {
  tenant: string;
  groups: Array<{ group: string; key: string; key_created_at: string; repositories: Repo[] }>;
  ungrouped: Array<Omit<Repo, 'repository' | 'address'>>;
}

const GROUP_KEY = /^[A-Za-z0-9_-]{43}$/;

describe('repository directory and group keys (admin API and `tether tenants repos`)', () => {
  let gw: TestGateway;
  let web: TestServer;
  let echo: TestServer;
  let conn: TestConnector;
  let plain: SshForward;

  const listing = async (tenant = 'acme'): Promise<Listing> => {
    const r = await gw.api('GET', `/v1/tenants/${tenant}/repositories`);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    return r.json as Listing;
  };
  const repo = (l: Listing, group: string, name: string) =>
    l.groups.find((g) => g.group === group)?.repositories.find((r) => r.repository === name);

  before(async () => {
    gw = await startGateway();
    web = await startHttpServer('web');
    echo = await startEchoServer();
    const key = await gw.addTenant('acme');
    await gw.addTenant('empty');
    conn = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile: key,
      repositories: {
        docs: { web: `http://127.0.0.1:${web.port}`, dav: `webdav+http://127.0.0.1:${web.port}/dav` },
        ops: { echo: `tcp://127.0.0.1:${echo.port}` },
      },
    });
    // A plain OpenSSH forward whose label is not <group>/<repo>.
    plain = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'acme',
      keyFile: key,
      forwards: [{ label: 'legacy', port: echo.port }],
    });
    assert.ok(plain.ports.get('legacy'));
  });

  after(async () => {
    await plain?.stop();
    await conn?.stop();
    await gw?.stop();
    await web?.close();
    await echo?.close();
  });

  test('GET /v1/tenants/{id}/repositories: groups with keys; per repository service, scheme, path, destination, port, node, state, connections', async () => {
    const l = await listing();
    assert.equal(l.tenant, 'acme');
    assert.deepEqual(
      l.groups.map((g) => g.group),
      ['docs', 'ops'],
    );
    for (const g of l.groups) {
      assert.match(g.key, GROUP_KEY);
      assert.ok(!Number.isNaN(Date.parse(g.key_created_at)));
    }
    assert.notEqual(l.groups[0]!.key, l.groups[1]!.key);
    const { endpoints, limits, usage, node, ...dav } = repo(l, 'docs', 'dav')!;
    // the node serving it: a cluster member's; under `workers` the worker that holds the session
    if (gw.workerPids().length > 0) assert.match(node ?? '', /^worker-\d+$/);
    else assert.equal(node, null);
    assert.deepEqual(
      endpoints?.map((x) => [x.state, x.connections]),
      [['online', 0]],
    );
    assert.equal(limits, null);
    assert.equal(usage?.bytes, 0);
    assert.deepEqual(
      { ...dav, port: 0 },
      {
        label: 'docs/dav',
        repository: 'dav',
        address: 'dav.docs.acme',
        port: 0,
        state: 'online',
        service: 'webdav',
        scheme: 'http',
        destination: `127.0.0.1:${web.port}`,
        path: '/dav',
        connections: 0,
        connectors: 1,
        allow_from: null,
      },
    );
    assert.ok(dav.port >= gw.portRange.low && dav.port <= gw.portRange.high);
    const e = repo(l, 'ops', 'echo')!;
    assert.equal(e.service, 'tcp');
    assert.equal(e.destination, `127.0.0.1:${echo.port}`);
    assert.deepEqual(
      l.ungrouped.map((f) => [f.label, f.state, f.service]),
      [['legacy', 'online', null]],
    );
    // The key is stable from one listing to the next.
    assert.equal((await listing()).groups[0]!.key, l.groups[0]!.key);
  });

  test('live connections are counted per repository', async () => {
    const port = repo(await listing(), 'ops', 'echo')!.port;
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => {});
    await new Promise<void>((resolve) => {
      s.once('connect', () => s.write('hi'));
      s.once('data', () => resolve());
    });
    try {
      await waitFor(async () => repo(await listing(), 'ops', 'echo')!.connections === 1, {
        what: 'connections = 1',
      });
    } finally {
      s.destroy();
    }
    await waitFor(async () => repo(await listing(), 'ops', 'echo')!.connections === 0, {
      what: 'connections = 0',
    });
  });

  test('`tether tenants repos acme` prints a table and the group keys; --json prints the API answer', async () => {
    const l = await listing();
    const r = await gw.tether(['tenants', 'repos', 'acme']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    // a NODE column only where there is more than one node: cluster members, or `workers`
    const node =
      gw.workerPids().length > 0 ? { head: '\\s+NODE', cell: '\\s+worker-\\S+' } : { head: '', cell: '' };
    assert.match(
      lines[0]!,
      new RegExp(
        `^GROUP\\s+REPOSITORY\\s+ADDRESS\\s+SERVICE\\s+DESTINATION\\s+PORT\\s+STATE\\s+CONNECTIONS${node.head}$`,
      ),
    );
    const dav = repo(l, 'docs', 'dav')!;
    assert.ok(
      lines.some((x) =>
        new RegExp(
          `^docs\\s+dav\\s+dav\\.docs\\.acme\\s+webdav\\+http\\s+127\\.0\\.0\\.1:${web.port}/dav\\s+${dav.port}\\s+online\\s+0${node.cell}$`,
        ).test(x),
      ),
      r.stdout,
    );
    assert.ok(
      lines.some((x) => /^ops\s+echo\s+echo\.ops\.acme\s+tcp\s+/.test(x)),
      r.stdout,
    );
    assert.ok(
      lines.some((x) =>
        new RegExp(`^-\\s+legacy\\s+-\\s+-\\s+-\\s+\\d+\\s+online\\s+0${node.cell}$`).test(x),
      ),
      r.stdout,
    );
    assert.ok(
      lines.some((x) => /^GROUP\s+KEY\s+KEY CREATED$/.test(x)),
      r.stdout,
    );
    for (const g of l.groups)
      assert.ok(
        lines.some((x) => x.startsWith(`${g.group}`) && x.includes(g.key)),
        `key of ${g.group} shown`,
      );

    const j = await gw.tether(['tenants', 'repos', 'acme', '--json']);
    assert.equal(j.code, 0, j.stderr);
    assert.deepEqual(
      (JSON.parse(j.stdout) as Listing).groups.map((g) => [g.group, g.key]),
      l.groups.map((g) => [g.group, g.key]),
    );
  });

  test('a tenant without repositories, an unknown tenant and an invalid id', async () => {
    const e = await gw.tether(['tenants', 'repos', 'empty']);
    assert.equal(e.code, 0, e.stderr);
    assert.equal(
      e.stdout,
      'tenant empty has no repositories yet (they appear once a connector forwards them)\n',
    );
    assert.deepEqual(await listing('empty'), { tenant: 'empty', groups: [], ungrouped: [] });

    const missing = await gw.api('GET', '/v1/tenants/nope/repositories');
    assert.equal(missing.status, 404);
    assert.deepEqual(missing.json, {
      error: { code: 'TENANT_NOT_FOUND', message: 'tenant "nope" does not exist' },
    });
    const m = await gw.tether(['tenants', 'repos', 'nope']);
    assert.equal(m.code, 3);
    assert.equal(m.stderr, 'tether: tenant "nope" does not exist\n');

    const bad = await gw.api('GET', '/v1/tenants/Bad!Id/repositories');
    assert.equal(bad.status, 400);
    const b = await gw.tether(['tenants', 'repos', 'Bad!Id']);
    assert.equal(b.code, 2);
    assert.match(b.stderr, /^tether: invalid tenant id "Bad!Id"/);
  });

  test('POST /v1/tenants/{id}/groups/{group}/key rotates one group key; `tether tenants rotate-group-key` prints the new one', async () => {
    const before = await listing();
    const docs0 = before.groups.find((g) => g.group === 'docs')!.key;
    const ops0 = before.groups.find((g) => g.group === 'ops')!.key;
    const r = await gw.api('POST', '/v1/tenants/acme/groups/docs/key');
    assert.equal(r.status, 200);
    const body = r.json as { tenant: string; group: string; key: string; key_created_at: string };
    assert.equal(body.tenant, 'acme');
    assert.equal(body.group, 'docs');
    assert.match(body.key, GROUP_KEY);
    assert.notEqual(body.key, docs0);
    const after1 = await listing();
    assert.equal(after1.groups.find((g) => g.group === 'docs')!.key, body.key);
    assert.equal(after1.groups.find((g) => g.group === 'ops')!.key, ops0, 'other groups keep their key');
    await gw.output.wait(/"event":"group_key.rotated".*"group":"docs"/);

    const c = await gw.tether(['tenants', 'rotate-group-key', 'acme', 'ops']);
    assert.equal(c.code, 0, c.stderr);
    const printed = c.stdout.trim();
    assert.match(printed, GROUP_KEY);
    assert.match(c.stderr, /^new key for group ops of tenant acme/);
    assert.equal((await listing()).groups.find((g) => g.group === 'ops')!.key, printed);
    const cj = await gw.tether(['tenants', 'rotate-group-key', 'acme', 'ops', '--json']);
    assert.equal(cj.code, 0, cj.stderr);
    assert.equal((JSON.parse(cj.stdout) as { group: string }).group, 'ops');
    // Keys are never written to the gateway log.
    for (const k of [docs0, ops0, body.key, printed])
      assert.ok(!gw.output.text().includes(k), 'a group key in the log');
  });

  test('rotation refuses an unknown group, an invalid group name and an unknown tenant', async () => {
    const unknown = await gw.api('POST', '/v1/tenants/acme/groups/doc/key');
    assert.equal(unknown.status, 404);
    assert.deepEqual(unknown.json, {
      error: { code: 'GROUP_NOT_FOUND', message: 'tenant acme has no group "doc"' },
    });
    const u = await gw.tether(['tenants', 'rotate-group-key', 'acme', 'doc']);
    assert.equal(u.code, 3);
    assert.equal(u.stderr, 'tether: tenant acme has no group "doc"\n');
    assert.equal(u.stdout, '');

    const bad = await gw.tether(['tenants', 'rotate-group-key', 'acme', 'bad name']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^tether: invalid group name "bad name": use 1-63 letters/);
    const slash = await gw.api('POST', '/v1/tenants/acme/groups/a%2Fb/key');
    assert.equal(slash.status, 400);

    const nobody = await gw.tether(['tenants', 'rotate-group-key', 'nope', 'docs']);
    assert.equal(nobody.code, 3);
    assert.equal(nobody.stderr, 'tether: tenant "nope" does not exist\n');
    const get = await gw.api('GET', '/v1/tenants/acme/groups/docs/key');
    assert.equal(get.status, 405);
  });

  test('state goes offline when the connector leaves; keys and leases survive a gateway restart', async () => {
    const l0 = await listing();
    await conn.stop();
    await plain.stop();
    await waitFor(
      async () => (await listing()).groups.every((g) => g.repositories.every((r) => r.state === 'offline')),
      { what: 'all offline' },
    );
    const l1 = await listing();
    assert.equal(repo(l1, 'docs', 'dav')!.service, 'webdav', 'metadata kept while offline');
    assert.equal(repo(l1, 'docs', 'dav')!.connectors, 0);
    await gw.restart();
    const l2 = await listing();
    assert.deepEqual(
      l2.groups.map((g) => [g.group, g.key, g.repositories.map((r) => [r.repository, r.port, r.state])]),
      l0.groups.map((g) => [g.group, g.key, g.repositories.map((r) => [r.repository, r.port, 'offline'])]),
    );
  });
});
