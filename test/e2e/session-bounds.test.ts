import assert from 'node:assert/strict';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import type ssh2 from 'ssh2';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { type ControlSession, openControlSession } from '../helpers/control-session.js';
import { forwardOf, startGateway, type TestGateway } from '../helpers/gateway.js';
import { key, type Samples, scrape } from '../helpers/prometheus.js';
import { startHttpServer, type TestServer } from '../helpers/servers.js';
import { waitFor } from '../helpers/util.js';

/** One GET through a lease port; resolves with the body. */
function get(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/calm', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () =>
        res.statusCode === 200 ? resolve(body) : reject(new Error(`status ${res.statusCode}`)),
      );
    });
    req.setTimeout(20_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** Opens a session channel and asks nothing on it (the idle channel of the attack). */
function openBareSession(client: ssh2.Client): Promise<string> {
  return new Promise((resolve) => {
    const c = client as unknown as {
      _chanMgr: { add(cb: unknown): number };
      _protocol: { session(id: number, window: number, packet: number): void };
    };
    const wrapper = Object.assign((err: Error | undefined) => resolve(err ? err.message : 'open'), {
      type: 'session',
    });
    const id = c._chanMgr.add(wrapper);
    c._protocol.session(id, 2 * 1024 * 1024, 32 * 1024);
  });
}

describe('session bounds: metadata intake, floods of repo messages, channels and forward requests', () => {
  let gw: TestGateway;
  let web: TestServer;
  let calm: TestConnector;
  let calmPort: number;
  let malloryKey: string;
  /** GETs through the calm tenant's forward, kept going while the floods run. */
  const calmResults: string[] = [];
  let calmLoop: Promise<void> | undefined;
  let stopLoop = false;
  const metrics = (): Promise<Samples> =>
    scrape(`${gw.adminUrl}/metrics`, { authorization: `Bearer ${gw.adminToken}` });
  /** tether_refused_total{reason}: bursts are counted when they are logged, up to 10 s after. */
  const refusedReaches = (reason: string, n: number) =>
    waitFor(async () => ((await refusedTotal(reason)) >= n ? true : undefined), {
      timeout: 30_000,
      interval: 500,
      what: `tether_refused_total{reason="${reason}"} to reach ${n}`,
    });
  const refusedTotal = async (reason: string) =>
    (await metrics()).get(key('tether_refused_total', { reason })) ?? 0;
  const bursts = (reason: string) =>
    gw.output.lines.filter((l) => l.includes('"event":"bound.refused"') && l.includes(`"reason":"${reason}"`))
      .length;

  before(async () => {
    [gw, web] = await Promise.all([
      startGateway({
        config: { tunnel: { max_session_channels: 4, forward_requests: { per_second: 5, burst: 10 } } },
      }),
      startHttpServer('calm'),
    ]);
    malloryKey = await gw.addTenant('mallory', ['--ports', '3']);
    const calmKey = await gw.addTenant('calm');
    calm = await startConnector({
      gateway: gw.sshPort,
      tenant: 'calm',
      keyFile: calmKey,
      repositories: { grp: { web: `http://127.0.0.1:${web.port}` } },
    });
    calmPort = await calm.leasePort('grp/web');
    calmLoop = (async () => {
      while (!stopLoop) {
        calmResults.push(await get(calmPort).catch((e: Error) => `failed: ${e.message}`));
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
  });
  after(async () => {
    stopLoop = true;
    await calmLoop;
    await calm?.stop();
    await gw?.stop();
    await web?.close();
  });

  const mallory = (): Promise<ControlSession> =>
    openControlSession({ port: gw.sshPort, user: 'mallory', keyFile: malloryKey });

  test('bad repository metadata is refused with the field and the problem named, and is not stored', async (t) => {
    const t0 = Date.now();
    const s = await mallory();
    t.diagnostic(`logged in after ${Date.now() - t0} ms`);
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [
        { service: 'http', host: 'evil\x1b]0;pwned\x07', port: 80 },
        /grp\/a refused: host must be a host name or an IP address/,
      ],
      [{ service: 'http', host: 'two words', port: 80 }, /grp\/a refused: host must be/],
      [{ service: 'http', host: 'x'.repeat(300), port: 80 }, /grp\/a refused: host must be/],
      [
        { service: 'http', host: 'web', port: 70000 },
        /grp\/a refused: port must be a whole number from 1 to 65535/,
      ],
      [{ service: 'http', host: 'web', port: 8.5 }, /grp\/a refused: port must be a whole number/],
      [{ service: 'http', host: 'web', port: '80' }, /grp\/a refused: port must be/],
      [
        { service: 'http', host: 'web', port: 80, path: '/x\x1b[2J' },
        /grp\/a refused: path must start with "\/", be at most 1024 characters and hold no control characters/,
      ],
      [{ service: 'http', host: 'web', port: 80, path: `/${'p'.repeat(2000)}` }, /grp\/a refused: path must/],
      [{ service: 'gopher', host: 'web', port: 70 }, /grp\/a refused: service must be one of smb, webdav/],
      [
        { service: 'webdav', scheme: 'ftp', host: 'web', port: 80 },
        /grp\/a refused: scheme must be one of http, https/,
      ],
      [
        { service: 'webdav', host: 'web', port: 80 },
        /grp\/a refused: scheme webdav needs one of http, https/,
      ],
    ];
    for (const [fields, re] of cases) {
      const before = s.messages.length;
      s.send({ type: 'repo', label: 'grp/a', ...fields });
      const m = await s.waitMessage(
        (x, i = s.messages.indexOf(x)) => i >= before && x.type === 'error',
        20_000,
        `the refusal of ${JSON.stringify(fields).slice(0, 80)}`,
      );
      assert.equal(m.code, 'BAD_REPO_META');
      assert.match(String(m.message), re);
    }
    for (const label of ['grp/\x1b[31m', 'has space/x', '']) {
      const before = s.messages.length;
      s.send({ type: 'repo', label, service: 'http', host: 'web', port: 80 });
      const m = await s.waitMessage((x) => s.messages.indexOf(x) >= before && x.type === 'error');
      assert.equal(m.code, 'BAD_REPO_META');
      assert.match(
        String(m.message),
        /the label must be <group>\/<repo> \(printable ASCII, at most 200 characters\)/,
      );
      assert.ok(!String(m.message).includes('\x1b'), 'the refusal does not echo the escape');
    }
    t.diagnostic(`refusals seen after ${Date.now() - t0} ms`);
    // Good metadata and free text with escapes in it: the first is kept, the second cleaned.
    s.send({ type: 'hello', version: 1, agent: 'evil\x1b[2Jagent' });
    s.send({ type: 'repo', label: 'grp/ok', service: 'http', host: 'web.internal', port: 8080, path: '/x' });
    assert.equal(typeof (await s.forward('grp/ok')), 'number');
    assert.equal(typeof (await s.forward('grp/a')), 'number');
    s.send({ type: 'withdraw', label: 'grp/ok', reason: 'down\x1b]0;owned\x07' });
    await s.ping();
    const ok = await forwardOf(gw, 'mallory', 'grp/ok');
    const bad = await forwardOf(gw, 'mallory', 'grp/a');
    assert.equal((ok as unknown as { destination: string }).destination, 'web.internal:8080');
    assert.equal(
      (bad as unknown as { destination: string | null }).destination ?? null,
      null,
      'nothing stored',
    );
    assert.equal(ok!.endpoints[0]!.reason, 'down?]0;owned?');
    const tv = (await gw.api('GET', '/v1/tenants/mallory')).json as {
      tenant: { sessions: Array<{ agent: string }> };
    };
    assert.deepEqual(
      tv.tenant.sessions.map((x) => x.agent),
      ['evil?[2Jagent'],
    );
    await refusedReaches('bad_repo_meta', cases.length + 3);
    s.end();
    await s.closed;
  });

  test('a flood of repo messages with fresh labels: quota + 8 kept, the rest refused, logged once per burst', async (t) => {
    const s = await mallory();
    const N = 20_000;
    const before = await refusedTotal('repo_meta_per_session');
    const burstsBefore = bursts('repo_meta_per_session');
    const t0 = Date.now();
    let chunk = '';
    for (let i = 0; i < N; i++) {
      chunk += `${JSON.stringify({ type: 'repo', label: `flood/r${i}`, service: 'tcp', host: 'h', port: 1 })}\n`;
      if (chunk.length > 32_000) {
        s.write(chunk);
        chunk = '';
      }
    }
    s.write(chunk);
    await s.ping(60_000);
    const refused = s.messages.filter((m) => m.type === 'error' && m.code === 'REPO_META_LIMIT');
    t.diagnostic(`${N} repo messages in ${Date.now() - t0} ms; ${refused.length} refused`);
    // quota 3 + margin 8 = 11 described repositories, whatever the session sends
    assert.equal(refused.length, N - 11);
    assert.match(
      String(refused[0]!.message),
      /flood\/r11 refused: this session already described 11 repositories \(quota 3 \+ 8\)/,
    );
    await refusedReaches('repo_meta_per_session', before + N - 11);
    assert.ok(
      bursts('repo_meta_per_session') - burstsBefore <= 2,
      'logged once per burst, not once per message',
    );
    // a described repository can still be forwarded and described again
    assert.equal(typeof (await s.forward('flood/r3')), 'number');
    s.send({ type: 'repo', label: 'flood/r3', service: 'tcp', host: 'h2', port: 2 });
    await s.ping();
    assert.equal(
      ((await forwardOf(gw, 'mallory', 'flood/r3')) as unknown as { destination: string }).destination,
      'h2:2',
    );
    s.end();
    await s.closed;
  });

  test('thousands of idle session channels: 4 at most per session, the rest refused', async () => {
    const s = await mallory();
    const before = await refusedTotal('channels_per_session');
    const results = await Promise.all(Array.from({ length: 2000 }, () => openBareSession(s.client)));
    const opened = results.filter((r) => r === 'open').length;
    assert.equal(opened, 3, 'the control channel and three more');
    assert.ok(
      results.filter((r) => r !== 'open').every((r) => /open failure|prohibited/i.test(r)),
      results.find((r) => r !== 'open'),
    );
    const m = await s.waitMessage((x) => x.code === 'CHANNEL_LIMIT');
    assert.match(String(m.message), /too many session channels \(at most 4 at once; a connector needs one\)/);
    await s.ping();
    await refusedReaches('channels_per_session', before + 2000 - 3);
    s.end();
    await s.closed;
  });

  test('a flood of tcpip-forward requests is rate limited with a reason', async () => {
    const s = await mallory();
    const before = await refusedTotal('forward_requests_per_session');
    const results = await Promise.all(Array.from({ length: 300 }, () => s.forward('grp/ok')));
    const granted = results.filter((r) => typeof r === 'number').length;
    assert.ok(granted >= 10 && granted < 300, `${granted} granted`);
    const m = await s.waitMessage((x) => x.type === 'refused' && x.code === 'FORWARD_RATE_LIMITED');
    // Which of the two bounds refuses first depends on how fast the gateway works through the
    // queue (on a loaded machine the 10 waiting requests fill it before the tokens run out).
    assert.match(
      String(m.reason),
      /^too many forward requests (\(at most 5 per second, bursts of 10\)|waiting \(at most 10 per session\))$/,
    );
    await refusedReaches('forward_requests_per_session', before + 300 - granted);
    s.end();
    await s.closed;
  });

  test('an over-long control line is dropped with a message; the session goes on', async () => {
    const s = await mallory();
    s.write('a'.repeat(300_000));
    s.write('\n');
    const m = await s.waitMessage((x) => x.code === 'BAD_CONTROL_MESSAGE');
    assert.equal(m.message, 'control line longer than 65536 bytes');
    await s.ping();
    assert.equal(s.messages.filter((x) => x.code === 'BAD_CONTROL_MESSAGE').length, 1, 'one report per line');
    s.end();
    await s.closed;
  });

  test('the other tenant was served throughout', () => {
    assert.ok(calmResults.length > 0);
    assert.deepEqual(
      calmResults.filter((r) => !r.startsWith('hello from calm')),
      [],
    );
  });

  test('tether tenants list and repos print stored metadata with escape sequences escaped', async () => {
    const db = new Database(join(gw.dataDir, 'tether.db'));
    try {
      const now = new Date().toISOString();
      db.prepare(
        'INSERT INTO leases (tenant_id, label, port, created_at, last_used_at, service, scheme, host, dest_port, path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ).run(
        'calm',
        'grp/planted',
        gw.portRange.high,
        now,
        now,
        'http\x1b[31m',
        null,
        'h\x1b]0;owned\x07',
        80,
        '/\x1b[2J\x9b1m',
      );
    } finally {
      db.close();
    }
    for (const args of [
      ['tenants', 'list'],
      ['tenants', 'repos', 'calm'],
    ]) {
      const r = await gw.tether(args);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /grp\/planted|planted/);
      assert.ok(
        !['\x1b', '\x07', '\x9b'].some((c) => r.stdout.includes(c)),
        `no raw control character in ${args.join(' ')}:\n${r.stdout}`,
      );
      assert.match(r.stdout, /h\\x1b\]0;owned\\x07/);
    }
  });
});
