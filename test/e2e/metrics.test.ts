import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { SSH_OPTS, type SshForward, sshForward } from '../helpers/openssh.js';
import { delta, key, type Samples, scrape as scrapeUrl } from '../helpers/prometheus.js';
import { startEchoServer, startHttpServer, type TestServer, tcpExchange } from '../helpers/servers.js';
import { nextEvent, run, tempDir, waitFor } from '../helpers/util.js';

async function scrape(gw: TestGateway): Promise<Samples> {
  return scrapeUrl(`${gw.adminUrl}/metrics`, { authorization: `Bearer ${gw.adminToken}` });
}

/** CONNECT through the access proxy, then echo `payload`; returns the status line's code. */
function connectAndEcho(
  proxyPort: number,
  authority: string,
  auth: string,
  payload: Buffer,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: proxyPort });
    let buf = Buffer.alloc(0);
    let status = 0;
    let echoed = 0;
    s.on('error', reject);
    s.on('connect', () =>
      s.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: ${auth}\r\n\r\n`),
    );
    s.on('data', (c: Buffer) => {
      if (status === 0) {
        buf = Buffer.concat([buf, c]);
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        status = Number(/^HTTP\/1\.1 (\d{3})/.exec(buf.toString('latin1'))?.[1]);
        if (status !== 200) {
          s.destroy();
          resolve(status);
          return;
        }
        s.write(payload);
        return;
      }
      echoed += c.length;
      if (echoed >= payload.length) s.end();
    });
    s.on('end', () => resolve(status));
  });
}

describe('Prometheus metrics after real traffic', () => {
  let gw: TestGateway;
  let echo: TestServer;
  let web: TestServer & { requests: number };
  let ssh: SshForward | undefined;
  let keyFile: string;
  let proxyPort: number;
  let httpPort: number;

  before(async () => {
    [echo, web] = await Promise.all([startEchoServer(), startHttpServer('web')]);
    gw = await startGateway({
      config: {
        access_proxy: { listen: '127.0.0.1:0' },
        http_proxy: {
          listen: '127.0.0.1:0',
          routes: [
            { name: 'web', path_prefix: '/web', to: `http://127.0.0.1:${web.port}`, auth: { type: 'none' } },
          ],
        },
      },
    });
    const m = await gw.output.wait(/"event":"gateway.started".*"access_proxy":"127\.0\.0\.1:(\d+)"/);
    proxyPort = Number(m[1]);
    const started = JSON.parse(m.input) as { http_proxy: string };
    httpPort = Number(started.http_proxy.split(':').pop());
    keyFile = await gw.addTenant('acme');
  });

  after(async () => {
    await ssh?.stop();
    await echo?.close();
    await web?.close();
    await gw?.stop();
  });

  test('HTTP front door: requests and latency by status class, in the gateway metrics', async () => {
    const before = await scrape(gw);
    for (let i = 0; i < 5; i++) {
      const r = await fetch(`http://127.0.0.1:${httpPort}/web/n${i}`);
      assert.equal(await r.text(), `hello from web /web/n${i}\n`);
      assert.equal(r.status, 200);
    }
    for (let i = 0; i < 2; i++) {
      const r = await fetch(`http://127.0.0.1:${httpPort}/nowhere`);
      await r.text();
      assert.equal(r.status, 404);
    }
    const fd = (outcome: string) => ({ front_door: 'http_proxy', outcome });
    const after = await waitFor(
      async () => {
        const s = await scrape(gw);
        return delta(before, s, 'tether_frontdoor_requests_total', fd('2xx')) >= 5 &&
          delta(before, s, 'tether_frontdoor_requests_total', fd('4xx')) >= 2
          ? s
          : undefined;
      },
      { what: 'the HTTP front-door requests in the metrics' },
    );
    const d = (name: string, labels?: Record<string, string>) => delta(before, after, name, labels);
    assert.equal(d('tether_frontdoor_requests_total', fd('2xx')), 5);
    assert.equal(d('tether_frontdoor_requests_total', fd('4xx')), 2);
    assert.equal(d('tether_frontdoor_requests_total', fd('5xx')), 0);
    assert.equal(d('tether_frontdoor_duration_seconds_count', fd('2xx')), 5);
    assert.equal(d('tether_frontdoor_duration_seconds_count', fd('4xx')), 2);
    assert.ok(d('tether_frontdoor_duration_seconds_sum', fd('2xx')) > 0);
    assert.equal(d('tether_frontdoor_duration_seconds_bucket', { ...fd('2xx'), le: '+Inf' }), 5);
    assert.equal(d('tether_http_proxy_requests_total', { route: 'web', status: '200' }), 5);
    assert.equal(d('tether_http_proxy_requests_total', { route: '-', status: '404' }), 2);
    assert.equal(web.requests, 5);
  });

  test('GET /metrics needs the admin token', async () => {
    const r = await fetch(`${gw.adminUrl}/metrics`);
    assert.equal(r.status, 401);
    assert.match(((await r.json()) as { error: { code: string } }).error.code, /UNAUTHORIZED/);
  });

  test('counters move by exactly the traffic, logins, refusals and reconnects that happened', async () => {
    assert.equal((await gw.api('PATCH', '/v1/tenants/acme', { quota: 1 })).status, 200);
    const before = await scrape(gw);
    const t = { tenant: 'acme' };

    // One session, two forwards asked: the second is over the quota of 1.
    ssh = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'acme',
      keyFile,
      forwards: [
        { label: 'grp/echo', port: echo.port },
        { label: 'grp/two', port: echo.port },
      ],
    });
    const lease = ssh.ports.get('grp/echo');
    assert.ok(lease, ssh.stderr.text());
    assert.equal(ssh.ports.has('grp/two'), false);

    // Three raw-port connections of 10 000 bytes each way, one held open meanwhile.
    const held = net.connect({ host: '127.0.0.1', port: lease });
    await nextEvent(held, 'connect');
    held.write('x');
    await nextEvent(held, 'data');
    const during = await scrape(gw);
    assert.equal(during.get(key('tether_connections_active', t)), 1);
    assert.equal(during.get(key('tether_sessions')), 1);
    assert.equal(during.get(key('tether_forwards', { state: 'online' })), 1);
    const payload = Buffer.alloc(10_000, 'a');
    for (let i = 0; i < 2; i++)
      assert.equal((await tcpExchange(lease, payload, payload.length)).length, 10_000);
    held.end(payload.subarray(1));
    await new Promise<void>((r) => held.on('data', () => {}).once('close', () => r()));

    // Access proxy: a wrong group key (an auth failure), then the right one with 1 000 bytes.
    const groupKey = await gw.groupKey('acme', 'grp');
    const basic = (p: string) => `Basic ${Buffer.from(`acme:${p}`).toString('base64')}`;
    assert.equal(
      await connectAndEcho(proxyPort, 'echo.grp.acme:7', basic('wrong-key'), Buffer.alloc(1)),
      403,
    );
    assert.equal(
      await connectAndEcho(proxyPort, 'echo.grp.acme:7', basic(groupKey), Buffer.alloc(1_000, 'b')),
      200,
    );

    // Refused logins: an unknown tenant, and a key acme does not have.
    const otherKey = join(tempDir('tether-metrics-'), 'other');
    assert.equal((await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', otherKey])).code, 0);
    const login = (user: string, key: string) =>
      run('ssh', [...SSH_OPTS, '-i', key, '-p', String(gw.sshPort), `${user}@127.0.0.1`, 'true']);
    assert.notEqual((await login('nobody', keyFile)).code, 0);
    assert.notEqual((await login('acme', otherKey)).code, 0);

    // The connector goes away (its lease stays, offline) and comes back: one reconnect.
    await ssh.stop();
    const gone = await waitFor(
      async () => {
        const s = await scrape(gw);
        return s.get(key('tether_sessions')) === 0 ? s : undefined;
      },
      { what: 'session gone' },
    );
    assert.equal(gone.get(key('tether_forwards', { state: 'offline' })), 1);
    assert.equal(gone.get(key('tether_forwards', { state: 'online' })), 0);
    ssh = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'acme',
      keyFile,
      forwards: [{ label: 'grp/echo', port: echo.port }],
    });
    assert.equal(ssh.ports.get('grp/echo'), lease, 'same lease after the reconnect');

    const bytes = 3 * 10_000 + 1_000;
    const after = await waitFor(
      async () => {
        const s = await scrape(gw);
        return delta(before, s, 'tether_bytes_total', { ...t, direction: 'out' }) >= bytes &&
          delta(before, s, 'tether_reconnects_total', t) >= 1
          ? s
          : undefined;
      },
      { what: 'counters after the traffic' },
    );
    const d = (name: string, labels?: Record<string, string>) => delta(before, after, name, labels);
    assert.equal(d('tether_connections_opened_total', t), 4);
    assert.equal(d('tether_bytes_total', { ...t, direction: 'in' }), bytes);
    assert.equal(d('tether_bytes_total', { ...t, direction: 'out' }), bytes);
    assert.equal(after.get(key('tether_connections_active', t)), 0);
    assert.equal(d('tether_sessions_opened_total'), 2);
    assert.equal(d('tether_reconnects_total', t), 1);
    assert.equal(d('tether_forwards_granted_total'), 2);
    assert.equal(d('tether_forwards_refused_total', { code: 'TENANT_QUOTA_EXCEEDED' }), 1);
    assert.equal(d('tether_auth_failures_total', { reason: 'unknown_tenant' }), 1);
    assert.equal(d('tether_auth_failures_total', { reason: 'key_not_registered' }), 1);
    assert.equal(d('tether_auth_failures_total', { reason: 'access_proxy_wrong_group_key' }), 1);
    assert.equal(d('tether_frontdoor_requests_total', { front_door: 'raw_port', outcome: 'opened' }), 3);
    assert.equal(d('tether_frontdoor_requests_total', { front_door: 'access_proxy', outcome: 'allowed' }), 1);
    assert.equal(d('tether_frontdoor_requests_total', { front_door: 'access_proxy', outcome: 'denied' }), 1);
    assert.equal(d('tether_frontdoor_duration_seconds_count', { front_door: 'raw_port' }), 3);
    assert.equal(d('tether_frontdoor_duration_seconds_count', { front_door: 'access_proxy' }), 1);
    assert.equal(d('tether_connection_setup_seconds_count'), 4);
    assert.ok(d('tether_connection_setup_seconds_sum') > 0);
    assert.equal(after.get(key('tether_tenants')), 1);
    assert.equal(after.get(key('tether_sessions')), 1);
    assert.equal(after.get(key('tether_forwards', { state: 'online' })), 1);
    // Process metrics.
    assert.ok((after.get(key('tether_process_cpu_seconds_total')) ?? 0) > 0);
    assert.ok(after.has(key('tether_nodejs_eventloop_lag_seconds')));
    assert.ok((after.get(key('tether_process_resident_memory_bytes')) ?? 0) > 0);

    // A removed tenant's series go away (label sets stay bounded). The gateway sees the
    // connector leave only when its TCP connection closes: wait for that first, so the forward
    // (and its tether_connections_active series) is gone before the tenant is.
    await ssh.stop();
    await waitFor(async () => ((await scrape(gw)).get(key('tether_sessions')) === 0 ? true : undefined), {
      what: 'session gone before the removal',
    });
    assert.equal((await gw.api('DELETE', '/v1/tenants/acme')).status, 204);
    const removed = await waitFor(
      async () => {
        const s = await scrape(gw);
        return s.get(key('tether_tenants')) === 0 ? s : undefined;
      },
      { what: 'tenant gone from the metrics' },
    );
    assert.deepEqual(
      [...removed.keys()].filter((k) => k.includes('tenant="acme"')),
      [],
    );
  });
});
