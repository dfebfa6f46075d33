// test-timeout: 240000 (a gateway, three connectors, the CLI; about 20 s alone, longer on a loaded machine)
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { key, scrape } from '../helpers/prometheus.js';
import {
  closedAt,
  echoOnce,
  openEcho,
  startEchoServer,
  startHttpServer,
  type TestServer,
} from '../helpers/servers.js';
import { waitFor } from '../helpers/util.js';

/**
 * Source-address allowlists end to end: the real binary, a real connector and echo server, callers
 * from 127.0.0.1, 127.0.0.2 (another loopback address) and ::1 (the lease ports listen on "::").
 */

/** Echo through the lease port from `from`; resolves the echo, or 'closed' when the gateway hangs up. */
function echoFrom(
  port: number,
  from: { host: string; localAddress?: string },
  text = 'ping',
): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: from.host, port, localAddress: from.localAddress });
    let got = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer and no close within 10 s (got ${JSON.stringify(got)})`));
    }, 10_000);
    s.on('connect', () => s.write(text));
    s.on('data', (c: Buffer) => {
      got += c.toString();
      if (got.length >= text.length) {
        clearTimeout(timer);
        s.destroy();
        resolve(got);
      }
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve(got === '' ? 'closed' : got);
    });
  });
}

/** Sends a CONNECT to the access proxy from `localAddress`; resolves the status line and body. */
function connectVia(
  proxy: number,
  authority: string,
  auth: string,
  localAddress: string,
): Promise<{ status: number; body: string; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: proxy, localAddress });
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`no answer: ${JSON.stringify(buf)}`)), 10_000);
    s.on('connect', () =>
      s.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: ${auth}\r\n\r\n`),
    );
    s.on('error', reject);
    const onData = (c: Buffer) => {
      buf += c.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const status = Number(/^HTTP\/1\.1 (\d+)/.exec(buf)?.[1]);
      const len = Number(/content-length: (\d+)/i.exec(buf)?.[1] ?? 0);
      if (status !== 200 && buf.length < end + 4 + len) return;
      clearTimeout(timer);
      s.off('data', onData);
      resolve({ status, body: buf.slice(end + 4, end + 4 + len), socket: s });
    };
    s.on('data', onData);
  });
}

const V4 = { host: '127.0.0.1' };
const V4_OTHER = { host: '127.0.0.1', localAddress: '127.0.0.2' };
const V6 = { host: '::1' };

describe('source-address allowlists (allow_from, tunnel_from)', () => {
  let gw: TestGateway;
  let echo: TestServer;
  let acme: TestConnector;
  let beta: TestConnector;
  let acmePort: number;
  let betaPort: number;
  let acmeKeyFile: string;
  let proxyPort: number;
  let httpDoor: number;
  let web: TestServer;
  const refusedTotal = async (reason: string) =>
    (await scrape(`${gw.adminUrl}/metrics`, { authorization: `Bearer ${gw.adminToken}` })).get(
      key('tether_refused_total', { reason }),
    ) ?? 0;

  /** A connector of `tenant` serving g/echo. */
  const echoConnector = (tenant: string, keyFile: string, o: { waitActive?: boolean } = {}) =>
    startConnector({
      gateway: gw.sshPort,
      tenant,
      keyFile,
      repositories: { g: { echo: `tcp://127.0.0.1:${echo.port}` } },
      ...o,
    });

  before(async () => {
    echo = await startEchoServer();
    web = await startHttpServer('intranet');
    gw = await startGateway({
      config: {
        forwards: { bind: '::' },
        access_proxy: { listen: '127.0.0.1:0' },
        http_proxy: {
          listen: '127.0.0.1:0',
          routes: [{ name: 'web', path_prefix: '/web', to: 'tenant://acme/g/web', auth: { type: 'none' } }],
        },
      },
    });
    acmeKeyFile = await gw.addTenant('acme');
    const betaKey = await gw.addTenant('beta');
    const repos = { g: { echo: `tcp://127.0.0.1:${echo.port}` } };
    acme = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile: acmeKeyFile,
      repositories: { g: { ...repos.g, web: `http://127.0.0.1:${web.port}` } },
    });
    beta = await startConnector({
      gateway: gw.sshPort,
      tenant: 'beta',
      keyFile: betaKey,
      repositories: repos,
    });
    acmePort = await acme.leasePort('g/echo');
    betaPort = await beta.leasePort('g/echo');
    const m = await gw.output.wait(/"event":"gateway.started".*"access_proxy":"127\.0\.0\.1:(\d+)"/);
    proxyPort = Number(m[1]);
    httpDoor = Number((await gw.output.wait(/"http_proxy":"127\.0\.0\.1:(\d+)"/))[1]);
  });
  after(async () => {
    await acme?.stop();
    await beta?.stop();
    await gw?.stop();
    await echo?.close();
    await web?.close();
  });

  test('no list: every address reaches the lease port (IPv4, another loopback address, IPv6)', async () => {
    assert.equal(await echoFrom(acmePort, V4), 'ping');
    assert.equal(await echoFrom(acmePort, V4_OTHER), 'ping');
    assert.equal(await echoFrom(acmePort, V6), 'ping');
  });

  test('tenant allow_from through the CLI: refused at once outside, logged and counted; other tenants untouched', async () => {
    const before = await refusedTotal('allow_from');
    const r = await gw.tether(['tenants', 'change', '--allow-from', '127.0.0.2/32, ::1', 'acme']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'tenant acme: allow_from 127.0.0.2/32, ::1/128\n');
    // the next connection after the command returned is already judged by the new list
    assert.equal(await echoFrom(acmePort, V4), 'closed');
    assert.equal(await echoFrom(acmePort, V4_OTHER), 'ping');
    assert.equal(await echoFrom(acmePort, V6), 'ping');
    assert.equal(await echoFrom(betaPort, V4), 'ping', 'beta has no list');
    const line = await gw.output.wait(/"event":"bound\.refused".*"reason":"allow_from".*"tenant":"acme"/);
    assert.match(line.input, /source address 127\.0\.0\.1 is not in the allow_from list of tenant acme/);
    await gw.output.wait(
      /"event":"connection\.refused".*"tenant":"acme".*source address 127\.0\.0\.1 is not in the allow_from list/,
    );
    await waitFor(async () => (await refusedTotal('allow_from')) > before, {
      what: 'tether_refused_total{reason="allow_from"}',
    });
    const list = await gw.tether(['tenants', 'list', 'acme']);
    assert.match(
      list.stdout,
      /TENANT\s+SCOPE\s+ALLOW FROM\s+TUNNEL FROM\n\s*acme\s+\(tenant\)\s+127\.0\.0\.2\/32, ::1\/128\s+anywhere/,
    );
    const json = await gw.tether(['tenants', 'list', 'acme', '--json']);
    assert.deepEqual(JSON.parse(json.stdout).allow_from, ['127.0.0.2/32', '::1/128']);
  });

  test('the access proxy answers 403 with the reason outside the list, and connects inside', async () => {
    const groupKey = await gw.groupKey('acme', 'g');
    const auth = `Basic ${Buffer.from(`acme:${groupKey}`).toString('base64')}`;
    const out = await connectVia(proxyPort, 'echo.g.acme:1', auth, '127.0.0.1');
    out.socket.destroy();
    assert.equal(out.status, 403);
    assert.match(out.body, /source address 127\.0\.0\.1 is not in the allow_from list of tenant acme/);
    const inside = await connectVia(proxyPort, 'echo.g.acme:1', auth, '127.0.0.2');
    assert.equal(inside.status, 200);
    inside.socket.write('hello');
    const back = await new Promise<string>((resolve) =>
      inside.socket.once('data', (c: Buffer) => resolve(c.toString())),
    );
    inside.socket.destroy();
    assert.equal(back, 'hello');
  });

  test('a repository list narrows the tenant list; removing both lets everyone in again', async () => {
    const r = await gw.api('PATCH', '/v1/tenants/acme', { repository: 'g/echo', allow_from: ['::1/128'] });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    const f = (r.json as { tenant: { forwards: Array<{ label: string; allow_from: string[] | null }> } })
      .tenant.forwards[0]!;
    assert.deepEqual(f.allow_from, ['::1/128']);
    assert.equal(
      await echoFrom(acmePort, V4_OTHER),
      'closed',
      'inside the tenant list, outside the repository list',
    );
    assert.equal(await echoFrom(acmePort, V6), 'ping');
    await gw.output.wait(/source address 127\.0\.0\.2 is not in the allow_from list of repository g\/echo/);
    const off = await gw.tether(['tenants', 'change', '--allow-from', 'off', 'acme']);
    assert.equal(off.code, 0, off.stderr);
    assert.equal(off.stdout, 'tenant acme: allow_from off (anyone)\n');
    const offRepo = await gw.tether(['tenants', 'change', '--repo', 'g/echo', '--allow-from', 'off', 'acme']);
    assert.equal(offRepo.code, 0, offRepo.stderr);
    assert.equal(await echoFrom(acmePort, V4), 'ping');
  });

  test('the HTTP front door answers 403 with the reason outside a repository list', async () => {
    const r = await gw.api('PATCH', '/v1/tenants/acme', { repository: 'g/web', allow_from: ['127.0.0.2'] });
    assert.equal(r.status, 200);
    const ask = (localAddress: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port: httpDoor, path: '/web/x', localAddress }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => {
            body += c.toString();
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject);
      });
    const out = await ask('127.0.0.1');
    assert.equal(out.status, 403);
    assert.match(out.body, /source address 127\.0\.0\.1 is not in the allow_from list of repository g\/web/);
    await gw.output.wait(/"reason":"allow_from".*"route":"web"/);
    const inside = await ask('127.0.0.2');
    assert.equal(inside.status, 200);
    assert.match(inside.body, /hello from intranet/);
    await gw.api('PATCH', '/v1/tenants/acme', { repository: 'g/web', allow_from: null });
    assert.equal((await ask('127.0.0.1')).status, 200);
  });

  test('IPv4-mapped callers on a dual-stack port match IPv4 blocks', async () => {
    const r = await gw.api('PATCH', '/v1/tenants/acme', { allow_from: ['127.0.0.0/30'] });
    assert.equal(r.status, 200);
    assert.equal(await echoFrom(acmePort, V4), 'ping', '::ffff:127.0.0.1 is 127.0.0.1');
    assert.equal(await echoFrom(acmePort, V6), 'closed');
    await gw.api('PATCH', '/v1/tenants/acme', { allow_from: null });
  });

  test('bad lists are refused with the value named, and change nothing', async () => {
    await gw.api('PATCH', '/v1/tenants/beta', { allow_from: ['127.0.0.0/8'] });
    const cli = await gw.tether(['tenants', 'change', '--allow-from', '10.0.0.0/8,10.0.0.300/8', 'beta']);
    assert.equal(cli.code, 2);
    assert.match(cli.stderr, /invalid address block "10\.0\.0\.300\/8": not an IPv4 or IPv6 address/);
    const add = await gw.tether(['tenants', 'add', 'gamma', '--allow-from', '192.0.2.0/33']);
    assert.equal(add.code, 2);
    assert.match(
      add.stderr,
      /invalid address block "192\.0\.2\.0\/33": the prefix length must be a whole number from 0 to 32/,
    );
    assert.equal((await gw.api('GET', '/v1/tenants/gamma')).status, 404, 'no half-made tenant');
    const api = await gw.api('PATCH', '/v1/tenants/beta', { allow_from: ['fe80::/10', 'corp-network'] });
    assert.equal(api.status, 400);
    assert.match(
      JSON.stringify(api.json),
      /allow_from: invalid address block \\"corp-network\\": not an IPv4 or IPv6 address/,
    );
    const many = Array.from({ length: 65 }, (_, i) => `10.${i}.0.0/16`);
    const tooMany = await gw.api('PATCH', '/v1/tenants/beta', { allow_from: many });
    assert.equal(tooMany.status, 400);
    assert.match(JSON.stringify(tooMany.json), /allow_from holds 65 address blocks; at most 64 are allowed/);
    const both = await gw.api('PATCH', '/v1/tenants/beta', {
      repository: 'g/echo',
      tunnel_from: ['10.0.0.0/8'],
    });
    assert.equal(both.status, 400);
    assert.match(JSON.stringify(both.json), /tunnel_from applies to the whole tenant/);
    const notList = await gw.api('PATCH', '/v1/tenants/beta', { allow_from: '10.0.0.0/8' });
    assert.equal(notList.status, 400);
    const beta = (await gw.api('GET', '/v1/tenants/beta')).json as { tenant: { allow_from: string[] } };
    assert.deepEqual(beta.tenant.allow_from, ['127.0.0.0/8'], 'the old list stays');
    assert.equal(await echoFrom(betaPort, V4), 'ping');
    assert.equal(await echoFrom(acmePort, V4), 'ping', 'acme unharmed');
    await gw.api('PATCH', '/v1/tenants/beta', { allow_from: null });
  });

  test("tunnel_from: a connector outside it cannot log in, one inside can; other tenants' sessions stay", async () => {
    const file = await gw.addTenant('delta', ['--tunnel-from', '127.0.0.2']);
    await gw.output.wait(
      /"event":"tenant\.allow_from_changed".*"tenant":"delta".*"tunnel_from":\["127\.0\.0\.2\/32"\]/,
    );
    const shown = await gw.api('GET', '/v1/tenants/delta');
    assert.deepEqual((shown.json as { tenant: { tunnel_from: string[] } }).tenant.tunnel_from, [
      '127.0.0.2/32',
    ]);
    const before = await refusedTotal('tunnel_from');
    const outside = await echoConnector('delta', file, { waitActive: false });
    try {
      const line = await gw.output.wait(
        /login refused: source address 127\.0\.0\.1 is not in the tunnel_from list of tenant delta/,
        30_000,
      );
      assert.match(line.input, /"reason":"tunnel_from"/);
      await waitFor(async () => (await refusedTotal('tunnel_from')) > before, {
        what: 'tunnel_from counted',
      });
      const st = await outside.status();
      assert.notEqual(st.state, 'connected');
    } finally {
      await outside.stop();
    }
    // allowed from 127.0.0.1 now: it logs in
    const r = await gw.tether(['tenants', 'change', '--tunnel-from', '127.0.0.0/8', 'delta']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'tenant delta: tunnel_from 127.0.0.0/8\n');
    const inside = await echoConnector('delta', file);
    try {
      const port = await inside.leasePort('g/echo');
      assert.equal(await echoFrom(port, V4), 'ping');
    } finally {
      await inside.stop();
    }
    // acme's live session never noticed any of this
    assert.equal(await echoFrom(acmePort, V4), 'ping');
  });

  test('a narrowed list ends what it no longer admits: open connections outside allow_from and sessions outside tunnel_from, within 1 s; the rest stays', async () => {
    const outside = await openEcho(acmePort, V4_OTHER);
    const inside = await openEcho(acmePort, V4);
    const otherTenant = await openEcho(betaPort, V4_OTHER);
    const outsideClosed = closedAt(outside, 10_000);
    try {
      const r = await gw.api('PATCH', '/v1/tenants/acme', { allow_from: ['127.0.0.1/32'] });
      // from the acknowledgement (the PATCH's own time on a busy machine is not what is promised)
      const ackAt = Date.now();
      assert.equal(r.status, 200, JSON.stringify(r.json));
      const cutMs = Math.max(0, (await outsideClosed) - ackAt);
      assert.ok(cutMs < 1_000, `the connection from 127.0.0.2 was cut ${cutMs} ms after the change`);
      const line = await gw.output.wait(/^\{.*"event":"tenant\.allowlists_enforced".*"tenant":"acme".*$/m);
      assert.match(line[0], /"connections":1,"sessions":0/);
      // inside the list, and another tenant: untouched
      await echoOnce(inside, 'still in');
      await echoOnce(otherTenant, 'beta');
    } finally {
      for (const c of [outside, inside, otherTenant]) c.destroy();
      await gw.api('PATCH', '/v1/tenants/acme', { allow_from: null });
    }

    // tunnel_from: a connector logged in from 127.0.0.1 is ended when the list leaves it out
    const file = await gw.addTenant('gamma');
    const gamma = await echoConnector('gamma', file);
    try {
      const port = await gamma.leasePort('g/echo');
      assert.equal(await echoFrom(port, V4), 'ping');
      const r = await gw.tether(['tenants', 'change', '--tunnel-from', '127.0.0.2', 'gamma']);
      assert.equal(r.code, 0, r.stderr);
      const ended = await gw.output.wait(/^\{.*"tenant":"gamma".*"event":"session\.ended_by_gateway".*$/m);
      assert.match(
        ended[0],
        /source address 127\.0\.0\.1 is not in the tunnel_from list of tenant gamma \(the list changed\)/,
      );
      await gw.output.wait(
        /^\{.*"event":"tenant\.allowlists_enforced".*"tenant":"gamma".*"connections":0,"sessions":1.*$/m,
      );
      await waitFor(async () => (await gamma.status()).state !== 'connected', { what: 'gamma disconnected' });
      assert.equal(await echoFrom(acmePort, V4), 'ping', 'acme unharmed');
    } finally {
      await gamma.stop();
    }
  });
});
