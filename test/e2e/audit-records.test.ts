import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startEchoServer, type TestServer } from '../helpers/servers.js';
import { nextEvent, waitFor } from '../helpers/util.js';

interface RecordView {
  opened_at: string;
  ended_at: string;
  duration_ms: number;
  front_door: string;
  repository: string;
  source: string;
  identity: string | null;
  connector: string | null;
  bytes_in: number;
  bytes_out: number;
  outcome: string;
  reason: string | null;
}

/** Sends `n` bytes, reads the echo back, closes; resolves with the local port it used. */
function echoThrough(port: number, n: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let local = 0;
    s.once('connect', () => {
      local = s.localPort ?? 0;
    });
    let got = 0;
    s.on('error', reject);
    s.on('connect', () => s.write(Buffer.alloc(n, 'a')));
    s.on('data', (c: Buffer) => {
      got += c.length;
      if (got >= n) s.end();
    });
    s.on('close', () => resolve(local));
  });
}

/** Connects and waits until the gateway closes (or resets) the connection; resolves with the local port. */
function refusedThrough(port: number): Promise<number> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let local = 0;
    s.once('connect', () => {
      local = s.localPort ?? 0;
    });
    s.on('error', () => {});
    s.on('close', () => resolve(local));
  });
}

/** CONNECT through the access proxy, exchange `n` bytes, close; resolves with the local port. */
function connectThrough(proxy: number, authority: string, auth: string, n: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: proxy });
    let local = 0;
    s.once('connect', () => {
      local = s.localPort ?? 0;
    });
    let head = '';
    let got = 0;
    let open = false;
    s.on('error', reject);
    s.on('connect', () =>
      s.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: ${auth}\r\n\r\n`),
    );
    s.on('data', (c: Buffer) => {
      if (!open) {
        head += c.toString('latin1');
        if (!head.includes('\r\n\r\n')) return;
        if (!head.startsWith('HTTP/1.1 200')) {
          s.destroy();
          reject(new Error(head.split('\r\n')[0]));
          return;
        }
        open = true;
        s.write(Buffer.alloc(n, 'b'));
        return;
      }
      got += c.length;
      if (got >= n) s.end();
    });
    s.on('close', () => resolve(local));
  });
}

describe('connection audit records', () => {
  let gw: TestGateway;
  let echo: TestServer;
  let conn: TestConnector;
  let proxyPort: number;

  before(async () => {
    [gw, echo] = await Promise.all([
      startGateway({ config: { access_proxy: { listen: '127.0.0.1:0' } } }),
      startEchoServer(),
    ]);
    proxyPort = Number(
      (await gw.output.wait(/"event":"gateway.started".*"access_proxy":"127\.0\.0\.1:(\d+)"/))[1],
    );
    const key = await gw.addTenant('acme');
    await gw.addTenant('other');
    conn = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile: key,
      repositories: { grp: { echo: `tcp://127.0.0.1:${echo.port}` } },
    });
  });

  after(async () => {
    await conn?.stop();
    await Promise.all([gw?.stop(), echo?.close()]);
  });

  const audit = async (id: string, args: string[] = []) => {
    const r = await gw.tether(['tenants', 'audit', id, '--json', ...args]);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { tenant: string; records: RecordView[] }).records;
  };

  test('one record per connection, with the real caller, identity, connector, bytes and outcome; read back by the CLI and the API', async () => {
    const lease = await conn.leasePort('grp/echo');
    const rawLocal = await echoThrough(lease, 3000);
    const key = ((await gw.api('POST', '/v1/tenants/acme/groups/grp/key')).json as { key: string }).key;
    const basic = `Basic ${Buffer.from(`acme:${key}`).toString('base64')}`;
    const proxyLocal = await connectThrough(proxyPort, 'echo.grp.acme:7', basic, 500);

    // Records are written in batches (about once a second): wait for both.
    const records = await waitFor(
      async () => {
        const r = await audit('acme');
        return r.length >= 2 ? r : undefined;
      },
      { what: 'two connection records', timeout: 30_000 },
    );
    const raw = records.find((r) => r.front_door === 'raw_port');
    const viaProxy = records.find((r) => r.front_door === 'access_proxy');
    assert.ok(raw && viaProxy, JSON.stringify(records));
    assert.equal(raw.source, `127.0.0.1:${rawLocal}`);
    assert.equal(raw.repository, 'grp/echo');
    assert.equal(raw.bytes_in, 3000);
    assert.equal(raw.bytes_out, 3000);
    assert.equal(raw.outcome, 'closed');
    assert.equal(raw.identity, null);
    assert.match(raw.connector ?? '', /^127\.0\.0\.1:\d+ \(tether-connector\/[^,]+, session .+\)$/);
    assert.ok(Date.parse(raw.ended_at) >= Date.parse(raw.opened_at));
    assert.equal(raw.duration_ms, Date.parse(raw.ended_at) - Date.parse(raw.opened_at));
    assert.equal(viaProxy.source, `127.0.0.1:${proxyLocal}`);
    assert.equal(viaProxy.identity, 'group key grp');
    assert.equal(viaProxy.bytes_in, 500);
    assert.equal(viaProxy.bytes_out, 500);
    // Newest first.
    assert.ok(records[0]!.ended_at >= records[records.length - 1]!.ended_at);

    // The table names the same things.
    const table = await gw.tether(['tenants', 'audit', 'acme']);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^ENDED\s+DOOR\s+REPOSITORY\s+CALLER\s+IDENTITY\s+IN\s+OUT\s+TIME\s+OUTCOME/);
    assert.match(
      table.stdout,
      new RegExp(`access_proxy\\s+grp/echo\\s+127\\.0\\.0\\.1:${proxyLocal}\\s+group key grp`),
    );
    assert.match(
      table.stdout,
      new RegExp(`raw_port\\s+grp/echo\\s+127\\.0\\.0\\.1:${rawLocal}\\s+-\\s+3 kB\\s+3 kB`),
    );

    // The API answers the same, and another tenant sees none of it.
    const api = await gw.api('GET', '/v1/tenants/acme/audit?limit=1');
    assert.equal(api.status, 200);
    assert.equal((api.json as { records: RecordView[] }).records.length, 1);
    assert.deepEqual(await audit('other'), []);
    const none = await gw.tether(['tenants', 'audit', 'other']);
    assert.match(none.stdout, /no connection records for other/);

    // --since: a time after every record finds none; a duration back finds them.
    assert.deepEqual(await audit('acme', ['--since', '2099-01-01']), []);
    assert.ok((await audit('acme', ['--since', '24h'])).length >= 2);
  });

  test('a connection refused by a limit is recorded with the reason', async () => {
    const lease = await conn.leasePort('grp/echo');
    const set = await gw.tether(['tenants', 'change', '--max-connections', '1', 'acme']);
    assert.equal(set.code, 0, set.stderr);
    const before = (await audit('acme')).length;
    // One connection held open takes the only place; the next one is refused by the broker.
    const held = net.connect({ host: '127.0.0.1', port: lease });
    await nextEvent(held, 'connect');
    held.write('x');
    await nextEvent(held, 'data');
    const refusedLocal = await refusedThrough(lease);
    held.end();
    await new Promise<void>((r) => held.once('close', () => r()));
    const records = await waitFor(
      async () => {
        const r = await audit('acme');
        return r.length >= before + 2 ? r : undefined;
      },
      { what: 'the held and the refused connection recorded', timeout: 30_000 },
    );
    const refused = records.find((r) => r.outcome === 'refused');
    assert.ok(refused, JSON.stringify(records));
    assert.equal(refused.front_door, 'raw_port');
    assert.equal(refused.source, `127.0.0.1:${refusedLocal}`);
    assert.equal(refused.reason, 'too many connections (1 of 1)');
    assert.equal(refused.bytes_in, 0);
    assert.equal(refused.connector, null);
    const off = await gw.tether(['tenants', 'change', '--max-connections', 'off', 'acme']);
    assert.equal(off.code, 0, off.stderr);
  });

  test('bad queries get a clear error and change nothing', async () => {
    const cases: Array<[string[], RegExp]> = [
      [
        ['--since', 'yesterday'],
        /invalid --since "yesterday": use a time \(2026-12-01 or 2026-12-01T08:00:00Z\) or a duration back from now/,
      ],
      [['--since', '2026-13-45'], /invalid --since "2026-13-45"/],
      [['--limit', '0'], /invalid --limit "0": use a whole number from 1 to 1000/],
      [['--limit', '5000'], /invalid --limit "5000"/],
      [['--limit', '-3'], /invalid --limit "-3"/],
    ];
    for (const [args, message] of cases) {
      const r = await gw.tether(['tenants', 'audit', 'acme', ...args]);
      assert.notEqual(r.code, 0, args.join(' '));
      assert.match(r.stderr, message);
    }
    const unknown = await gw.tether(['tenants', 'audit', 'nobody']);
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /tenant "nobody" does not exist/);
    const badId = await gw.tether(['tenants', 'audit', '../etc']);
    assert.notEqual(badId.code, 0);
    assert.match(badId.stderr, /invalid tenant id/);
    // The API checks its query itself (another client than the CLI).
    for (const [q, message] of [
      ['since=%00', /invalid since/],
      ['limit=1e3', /invalid limit "1e3"/],
      ['order=asc', /unknown query parameter "order"; use since and limit/],
    ] as const) {
      const r = await gw.api('GET', `/v1/tenants/acme/audit?${q}`);
      assert.equal(r.status, 400, q);
      assert.match((r.json as { error: { message: string } }).error.message, message);
    }
    // The records are still there.
    assert.ok((await audit('acme')).length >= 2);
  });

  test('records written before a restart are read back after it', async () => {
    const key = (r: RecordView) => `${r.source} ${r.ended_at} ${r.outcome}`;
    const before = (await audit('acme')).map(key);
    assert.ok(before.length >= 3);
    await gw.restart();
    const after = new Set((await audit('acme')).map(key));
    for (const k of before) assert.ok(after.has(k), `${k} survived the restart`);
  });
});
