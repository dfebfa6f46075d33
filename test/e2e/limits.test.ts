// test-timeout: 300000 (traffic quotas through the CLI and real transfers; about 40 s alone, over 2 min on a loaded 2-core machine)
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startEchoServer, type TestServer, tcpExchange } from '../helpers/servers.js';
import { nextEvent, waitFor } from '../helpers/util.js';

interface Usage {
  bytes: number;
  bytes_in: number;
  bytes_out: number;
  exhausted: boolean;
  period: string;
  period_start: string;
  resets_at: string | null;
}
interface Limits {
  balance: string;
  bandwidth_up: number | null;
  bandwidth_down: number | null;
  max_connections: number | null;
  traffic_limit: number | null;
  traffic_period: string | null;
}
interface TenantJson {
  limits: Limits;
  usage: Usage;
  forwards: Array<{ label: string; port: number; limits: Omit<Limits, 'balance'> | null; usage: Usage }>;
}

async function tenant(gw: TestGateway, id: string): Promise<TenantJson> {
  const r = await gw.api('GET', `/v1/tenants/${id}`);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return (r.json as { tenant: TenantJson }).tenant;
}

/** Connects and expects the gateway to close without sending anything. */
function refused(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('the connection stayed open'));
    }, 5000);
    s.on('data', () => reject(new Error('got data on a connection that should be refused')));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
    s.write('hello?');
  });
}

function resetsAt(): string {
  const d = new Date();
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1)).toISOString().slice(0, 10);
}

describe('traffic limits: CLI and admin API', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway();
    await gw.addTenant('acme');
  });
  after(async () => gw?.stop());

  test('tether tenants change sets limits with or without a quota; list and the API show them', async () => {
    const a = await gw.tether(['tenants', 'change', '--bandwidth', '1MB/s', 'acme']);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(a.stdout, 'tenant acme: bandwidth 1 MB/s each way\n');
    const b = await gw.tether([
      'tenants',
      'change',
      '5',
      'acme',
      '--max-connections',
      '50',
      '--traffic',
      '500GB/month',
      '--balance',
      'least-connections',
    ]);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(
      b.stdout,
      'tenant acme quota set to 5\ntenant acme: bandwidth 1 MB/s each way; at most 50 connections; traffic 500 GB per month; balance least-connections\n',
    );
    const plain = await gw.tether(['tenants', 'change', '7', 'acme']);
    assert.equal(plain.stdout, 'tenant acme quota set to 7\n', 'change <n> <id> works as before');
    const repo = await gw.tether([
      'tenants',
      'change',
      '--repo',
      'grp/web',
      '--bandwidth-down',
      '100Mbit/s',
      'acme',
    ]);
    assert.equal(repo.code, 0, repo.stderr);
    assert.equal(
      repo.stdout,
      'repository grp/web of acme: no limits of its own\n',
      'not leased yet: not listed',
    );

    const t = await tenant(gw, 'acme');
    assert.deepEqual(t.limits, {
      balance: 'least-connections',
      bandwidth_up: 1_000_000,
      bandwidth_down: 1_000_000,
      max_connections: 50,
      traffic_limit: 500_000_000_000,
      traffic_period: 'month',
    });
    assert.equal(t.usage.bytes, 0);
    assert.equal(t.usage.resets_at, resetsAt());
    const list = await gw.tether(['tenants', 'list']);
    assert.match(list.stdout, /LIMITS\s+TRAFFIC/);
    assert.match(
      list.stdout,
      /acme\s+7\s+0\s+-\s+-\s+1 MB\/s, 50 conn, 500 GB\/month, least-conn\s+0 B of 500 GB/,
    );

    // The API takes the same values; null or "off" removes a limit.
    const api = await gw.api('PATCH', '/v1/tenants/acme', {
      bandwidth_up: '10MB/s',
      bandwidth_down: null,
      max_connections: 'off',
      traffic: { limit: 1_000_000, period: '30d' },
      balance: 'round-robin',
    });
    assert.equal(api.status, 200, JSON.stringify(api.json));
    assert.deepEqual((api.json as { tenant: TenantJson }).tenant.limits, {
      balance: 'round-robin',
      bandwidth_up: 10_000_000,
      bandwidth_down: null,
      max_connections: null,
      traffic_limit: 1_000_000,
      traffic_period: '30d',
    });
    const off = await gw.tether(['tenants', 'change', '--bandwidth', 'off', '--traffic', 'off', 'acme']);
    assert.equal(off.stdout, 'tenant acme: no limits\n');
  });

  test('bad limits are refused with the reason (CLI exit 2, API 400) and change nothing', async () => {
    const before = await tenant(gw, 'acme');
    // Each parser's every case has a unit test (src/core/limits.test.ts); here what a user sees.
    const cli: Array<[string[], RegExp]> = [
      [
        ['--bandwidth', '10MB/h', 'acme'],
        /invalid bandwidth "10MB\/h": "\/h" is not per second; use a rate such as 10MB\/s/,
      ],
      [['--bandwidth', '10Mb/s', 'acme'], /the unit "Mb" is ambiguous: write MB for bytes or Mbit for bits/],
      [
        ['--max-connections', '-3', 'acme'],
        /invalid connection cap "-3": use a whole number from 1 to 1000000/,
      ],
      [
        ['--traffic', '500GB/year', 'acme'],
        /unknown period "year": use month or a number of days such as 30d/,
      ],
      [['--balance', 'random', 'acme'], /invalid balance "random": use round-robin or least-connections/],
      [
        ['--bandwidth', '1MB/s', '--bandwidth-up', '2MB/s', 'acme'],
        /give either --bandwidth \(both directions\) or --bandwidth-up\/--bandwidth-down/,
      ],
      [
        ['--repo', 'nogroup', '--bandwidth', '1MB/s', 'acme'],
        /invalid repository "nogroup": use <group>\/<repo>/,
      ],
      [['acme'], /missing the tenant id: tether tenants change <n> <id>/],
      [[], /nothing to change: tether tenants change <n> <id> sets the quota/],
    ];
    for (const [args, re] of cli) {
      const r = await gw.tether(['tenants', 'change', ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re, args.join(' '));
    }

    const api: Array<[unknown, RegExp]> = [
      [{ bandwidth: '10MB/h' }, /bandwidth: invalid bandwidth "10MB\/h": "\/h" is not per second/],
      [{ bandwidth_up: -1 }, /bandwidth_up: invalid bandwidth_up -1/],
      [{ bandwidth: true }, /bandwidth: a rate: bytes per second, or text such as "10MB\/s"/],
      [{ max_connections: -1 }, /max_connections: invalid connection cap -1/],
      [
        { traffic: '1GB/fortnight' },
        /traffic: invalid traffic quota "1GB\/fortnight": unknown period "fortnight"/,
      ],
      [{ traffic: { limit: -5 } }, /traffic: invalid traffic quota .*limit must be a whole number of bytes/],
      [{ balance: 'random' }, /balance: use round-robin or least-connections/],
      [
        { bandwidth: '1MB/s', bandwidth_up: '2MB/s' },
        /bandwidth: give either bandwidth \(both directions\) or bandwidth_up\/bandwidth_down/,
      ],
      [{ repository: 'grp/web', quota: 3 }, /repository: quota and balance apply to the whole tenant/],
      [
        { repository: 'no label here', bandwidth: '1MB/s' },
        /repository: use the repository label <group>\/<repo>/,
      ],
      [{ bandwidth_sideways: 1 }, /bandwidth_sideways/],
    ];
    for (const [body, re] of api) {
      const r = await gw.api('PATCH', '/v1/tenants/acme', body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.match((r.json as { error: { message: string } }).error.message, re, JSON.stringify(body));
    }
    const ghost = await gw.api('PATCH', '/v1/tenants/ghost', { bandwidth: '1MB/s' });
    assert.equal(ghost.status, 404);
    const cliGhost = await gw.tether(['tenants', 'change', '--bandwidth', '1MB/s', 'ghost']);
    assert.equal(cliGhost.code, 3);
    assert.match(cliGhost.stderr, /tenant "ghost" does not exist/);
    assert.deepEqual((await tenant(gw, 'acme')).limits, before.limits, 'nothing changed');
  });
});

describe('traffic quota and counters through a real connector', () => {
  let gw: TestGateway;
  let echo: TestServer;
  let metered: TestConnector;
  let plain: TestConnector;

  before(async () => {
    gw = await startGateway({ config: { access_proxy: { listen: '127.0.0.1:0' } } });
    echo = await startEchoServer();
    const repos = { grp: { echo: `tcp://127.0.0.1:${echo.port}` } };
    metered = await startConnector({
      gateway: gw.sshPort,
      tenant: 'metered',
      keyFile: await gw.addTenant('metered'),
      repositories: repos,
    });
    plain = await startConnector({
      gateway: gw.sshPort,
      tenant: 'plain',
      keyFile: await gw.addTenant('plain'),
      repositories: repos,
    });
  });
  after(async () => {
    await metered?.stop();
    await plain?.stop();
    await gw?.stop();
    await echo?.close();
  });

  test('a spent traffic quota refuses new connections with the reason; counters survive a gateway restart', async () => {
    const set = await gw.tether(['tenants', 'change', '--traffic', '1MB/month', 'metered']);
    assert.equal(set.code, 0, set.stderr);
    const port = await metered.leasePort('grp/echo');
    const payload = Buffer.alloc(600_000, 'q');
    assert.equal((await tcpExchange(port, payload, payload.length)).length, payload.length);
    const plainPort = await plain.leasePort('grp/echo');
    assert.equal((await tcpExchange(plainPort, Buffer.alloc(100_000), 100_000)).length, 100_000);

    // 600 kB each way: 1.2 MB of a 1 MB quota. The connection that spent it was not cut.
    const t = await waitFor(
      async () => {
        const v = await tenant(gw, 'metered');
        return v.usage.exhausted ? v : null;
      },
      { what: 'the quota to show as spent' },
    );
    assert.equal(t.usage.bytes_in, 600_000);
    assert.equal(t.usage.bytes_out, 600_000);
    const reason = `traffic quota exhausted (1 MB per month, resets ${resetsAt()})`;

    // Raw port: closed at once, the reason in the gateway log.
    await refused(port);
    await gw.output.wait(
      new RegExp(
        `"event":"connection.refused".*"tenant":"metered".*"reason":"${reason.replace(/[()]/g, '\\$&')}"`,
      ),
    );
    // The operator sees it once, when the counters are written.
    await gw.output.wait(/"event":"tenant.traffic_exhausted".*"tenant":"metered"/, 10_000);
    const list = await gw.tether(['tenants', 'list']);
    assert.match(list.stdout, /metered .*1 MB\/month\s+1\.2 MB of 1 MB \(spent\)/);

    // Access proxy: the caller gets the reason.
    const proxyPort = Number(
      (await gw.output.wait(/"event":"gateway.started".*"access_proxy":"127\.0\.0\.1:(\d+)"/))[1],
    );
    const key = await gw.groupKey('metered', 'grp');
    const answer = await new Promise<string>((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port: proxyPort });
      let got = '';
      s.on('data', (c: Buffer) => {
        got += c.toString();
      });
      s.on('close', () => resolve(got));
      s.on('error', reject);
      const auth = Buffer.from(`metered:${key}`).toString('base64');
      s.write(
        `CONNECT echo.grp.metered:1 HTTP/1.1\r\nHost: echo.grp.metered:1\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`,
      );
    });
    assert.match(answer, /^HTTP\/1\.1 429 /);
    assert.ok(answer.includes(reason), answer);

    // The plain tenant is not affected and was counted at close.
    assert.equal((await tcpExchange(plainPort, 'ok', 2)).toString(), 'ok');
    const plainBytes = await waitFor(
      async () => {
        const b = (await tenant(gw, 'plain')).usage.bytes;
        return b === 200_004 ? b : null;
      },
      { what: 'the plain tenant counted at close' },
    );

    await gw.restart();
    await waitFor(async () => (await metered.status()).connected && (await plain.status()).connected, {
      what: 'both connectors back',
      timeout: 15_000,
    });
    const after = await tenant(gw, 'metered');
    assert.equal(after.usage.bytes, 1_200_000, 'metered bytes survived the restart');
    assert.equal(after.usage.exhausted, true);
    assert.equal((await tenant(gw, 'plain')).usage.bytes, plainBytes, 'counted-at-close bytes too');
    await metered.leasePort('grp/echo');
    await refused(port);

    const lift = await gw.tether(['tenants', 'change', '--traffic', '10MB/month', 'metered']);
    assert.equal(lift.code, 0, lift.stderr);
    assert.equal((await tcpExchange(port, 'again', 5)).toString(), 'again');
  });

  test('a connection cap refuses the connection over it with the count', async () => {
    await gw.tether(['tenants', 'change', '--max-connections', '1', 'plain']);
    const port = await plain.leasePort('grp/echo');
    const held = net.connect({ host: '127.0.0.1', port });
    await nextEvent(held, 'connect');
    held.write('x');
    await nextEvent(held, 'data');
    await refused(port);
    await gw.output.wait(
      /"event":"connection.refused".*"tenant":"plain".*"reason":"too many connections \(1 of 1\)"/,
    );
    held.destroy();
    await waitFor(async () => (await tcpExchange(port, 'y', 1)).toString() === 'y', { what: 'a free slot' });
  });
});
