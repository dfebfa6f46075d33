import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import {
  echoOnce,
  openEcho,
  startEchoServer,
  startHttpServer,
  type TestServer,
  tcpExchange,
} from '../helpers/servers.js';
import { freePort, run, waitFor } from '../helpers/util.js';

interface ForwardJson {
  label: string;
  port: number;
  state: string;
  service?: string | null;
  scheme?: string | null;
  destination?: string | null;
  path?: string | null;
}

async function forwardsOf(gw: TestGateway, tenant: string): Promise<ForwardJson[]> {
  const r = await gw.tether(['tenants', 'list', tenant, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { forwards: ForwardJson[] }).forwards;
}

function curl(port: number, path = '/'): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return run('curl', ['-sS', '-m', '5', `http://127.0.0.1:${port}${path}`]);
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

describe('connector with a real gateway', () => {
  let gw: TestGateway;
  let http: TestServer;
  let echo: TestServer;
  let conn: TestConnector;
  let keyFile: string;
  let closedPort: number;

  before(async () => {
    [gw, http, echo, closedPort] = await Promise.all([
      startGateway(),
      startHttpServer('web'),
      startEchoServer(),
      freePort(),
    ]);
    keyFile = await gw.addTenant('acme');
    conn = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile,
      repositories: {
        docs: {
          web: `http://127.0.0.1:${http.port}/wiki`,
          echo: `tcp://127.0.0.1:${echo.port}`,
          dav: `webdav+http://127.0.0.1:${http.port}/dav/`,
        },
        broken: { down: `tcp://127.0.0.1:${closedPort}` },
      },
      // The kill -9 test measures "back within 10 s of the gateway's return": with the default
      // backoff (up to 30 s) a slow restart on a busy machine lets the next try wait longer
      // than that. The promise is about the reconnect, so bound the wait between tries.
      config: { reconnect: { max_delay: '2s' } },
    });
  });
  after(async () => {
    await conn?.stop();
    await gw?.stop();
    await http?.close();
    await echo?.close();
  });

  test('status shows the gateway, its fingerprint and every lease port; the log names them too', async () => {
    // the gateway's welcome carries the quota (it may send a second one once it has read it)
    const st = await waitFor(async () => {
      const s = await conn.status();
      return s.quota === 20 ? s : null;
    });
    assert.equal(st.connected, true);
    assert.equal(st.gateway, `127.0.0.1:${gw.sshPort}`);
    assert.equal(st.fingerprint, gw.hostFingerprint);
    assert.equal(st.tenant, 'acme');
    for (const r of st.repositories) {
      assert.equal(r.state, 'active', `${r.label}: ${r.reason}`);
      assert.ok(
        r.leasePort! >= gw.portRange.low && r.leasePort! <= gw.portRange.high,
        `${r.label} lease ${r.leasePort}`,
      );
    }
    const web = st.repositories.find((r) => r.label === 'docs/web')!;
    await conn.output.wait(new RegExp(`forward docs/web active on gateway port ${web.leasePort}`));
    await conn.output.wait(
      new RegExp(
        `connected to the gateway 127\\.0\\.0\\.1:${gw.sshPort} \\(${gw.hostFingerprint.replace(/[+/]/g, '\\$&')}\\)`,
      ),
    );

    const text = await conn.cli(['status']);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`connected to 127\\.0\\.0\\.1:${gw.sshPort} as tenant acme since`));
    assert.ok(text.stdout.includes(`gateway fingerprint: ${gw.hostFingerprint}`));
    assert.match(
      text.stdout,
      new RegExp(`docs/web\\s+http 127\\.0\\.0\\.1:${http.port}\\s+${web.leasePort}\\s+0\\s+.*active`),
    );
    const json = await conn.cli(['status', '--json']);
    assert.equal(JSON.parse(json.stdout).running, true);
  });

  test("the gateway's listing shows each repository's service, destination and path", async () => {
    const fwds = await forwardsOf(gw, 'acme');
    const dav = fwds.find((f) => f.label === 'docs/dav');
    assert.ok(dav, JSON.stringify(fwds));
    assert.equal(dav.service, 'webdav');
    assert.equal(dav.scheme, 'http');
    assert.equal(dav.destination, `127.0.0.1:${http.port}`);
    assert.equal(dav.path, '/dav/');
    const listing = await gw.tether(['tenants', 'list', 'acme']);
    assert.ok(listing.stdout.includes(`webdav+http://127.0.0.1:${http.port}/dav/`), listing.stdout);
  });

  test('HTTP through a lease port with curl; bytes and connections are counted', async () => {
    const port = await conn.leasePort('docs/web');
    const r = await curl(port, '/hello');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello from web /hello\n');
    const st = await waitFor(async () => {
      const s = await conn.repo('docs/web');
      return s && s.totalConnections >= 1 && s.connections === 0 && s.bytesOut > 0 ? s : null;
    });
    assert.ok(st.bytesIn > 0);
  });

  test('a TCP echo carries 4 MiB both ways intact', async () => {
    const port = await conn.leasePort('docs/echo');
    const payload = Buffer.alloc(4 * 1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7 + 3) & 0xff;
    const back = await tcpExchange(port, payload, payload.length);
    assert.equal(back.length, payload.length);
    assert.ok(back.equals(payload), 'echoed bytes differ');
  });

  test('a destination that is down: the caller is closed at once, status and log say why', async () => {
    const port = await conn.leasePort('broken/down');
    const t0 = Date.now();
    const r = await curl(port);
    assert.notEqual(r.code, 0);
    assert.ok(Date.now() - t0 < 3000, `curl took ${Date.now() - t0} ms`);
    const st = await waitFor(async () => {
      const s = await conn.repo('broken/down');
      return s?.state === 'unreachable' ? s : null;
    });
    assert.equal(st.reason, `destination unreachable: 127.0.0.1:${closedPort}: connection refused`);
    await conn.output.wait(/broken\/down: destination unreachable: 127\.0\.0\.1:\d+: connection refused/);
    const text = await conn.cli(['status']);
    assert.match(
      text.stdout,
      /broken\/down .*unreachable: destination unreachable: 127\.0\.0\.1:\d+: connection refused/,
    );

    // it comes back: the connector probes the destination and serves it again
    const revived = net.createServer((s) => {
      s.on('error', () => {});
      s.end('back\n');
    });
    await new Promise<void>((r) => revived.listen(closedPort, '127.0.0.1', () => r()));
    try {
      await waitFor(async () => (await conn.repo('broken/down'))?.state === 'active', {
        timeout: 12_000,
        what: 'the destination to be probed back to active',
      });
      await conn.output.wait(/broken\/down: destination reachable again/);
      assert.equal((await tcpExchange(port, '')).toString(), 'back\n');
    } finally {
      await new Promise<void>((r) => revived.close(() => r()));
    }
  });

  test('reload adds and removes repositories; open connections of unchanged ones stay, those of removed ones get drain_timeout', async () => {
    const echoPort = await conn.leasePort('docs/echo');
    const downPort = (await conn.repo('broken/down'))!.leasePort!;
    const open = await openEcho(echoPort);
    let removedOpen: net.Socket | undefined;
    try {
      conn.writeRepositories({
        docs: {
          web: `http://127.0.0.1:${http.port}/wiki`,
          echo: `tcp://127.0.0.1:${echo.port}`,
          dav: `webdav+http://127.0.0.1:${http.port}/dav/`,
          web2: `http://127.0.0.1:${http.port}/two`,
          echo2: `tcp://127.0.0.1:${echo.port}`,
        },
      });
      const r = await conn.cli(['reload']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'reloaded: added docs/web2, docs/echo2; removed broken/down\n');
      const port2 = await conn.leasePort('docs/web2');
      const res = await curl(port2, '/x');
      assert.equal(res.stdout, 'hello from web /x\n');
      assert.equal(await conn.repo('broken/down'), undefined);
      await waitFor(() => refused(downPort), { what: 'the removed lease to close' });
      const gone = (await forwardsOf(gw, 'acme')).find((f) => f.label === 'broken/down');
      assert.notEqual(gone?.state, 'online', 'the gateway no longer lists the removed forward as online');
      // the connection opened before the reload still works
      await echoOnce(open, 'still here\n');

      // SIGHUP does the same for `run`; a connection of a removed repository goes on within the
      // connector's drain_timeout (the one the reload brings; long, so that a busy machine cannot
      // make it run out here: the cut at drain_timeout is unit-tested with a fake clock), and the
      // drain ends when it closes
      const removed = await openEcho(await conn.leasePort('docs/echo2'));
      removedOpen = removed;
      conn.writeRepositories(
        { docs: { web: `http://127.0.0.1:${http.port}/wiki`, echo: `tcp://127.0.0.1:${echo.port}` } },
        { drain_timeout: '60s' },
      );
      conn.process.kill('SIGHUP');
      await waitFor(async () => (await conn.status()).repositories.length === 2, { what: 'SIGHUP reload' });
      await echoOnce(open, 'and still\n');
      const draining = await conn.output.wait(/^\{.*"event":"connector\.repository_draining".*$/m);
      assert.match(draining[0], /"label":"docs\/echo2","connections":1,"drain_timeout_ms":60000/);
      await echoOnce(removed, 'still carried after its removal\n');
      const st = await conn.cli(['status']);
      assert.match(
        st.stdout,
        /^removed by a reload: docs\/echo2, 1 open connection\(s\) finishing \(cut at \d{4}-\d\d-\d\dT[\d:.]+Z\)$/m,
      );
      removed.end();
      const drained = await conn.output.wait(/^\{.*"event":"connector\.repository_drained".*$/m);
      assert.match(drained[0], /"label":"docs\/echo2","cut":0/);
      assert.match(drained[0], /docs\/echo2 removed: every open connection finished/);
      assert.deepEqual((await conn.status()).finishing, [], 'nothing left finishing');
      // the later tests stop this connector at once again
      conn.writeRepositories(
        { docs: { web: `http://127.0.0.1:${http.port}/wiki`, echo: `tcp://127.0.0.1:${echo.port}` } },
        { drain_timeout: 0 },
      );
      const back = await conn.cli(['reload']);
      assert.equal(back.code, 0, back.stderr);
      await echoOnce(open, 'the kept one is untouched\n');
    } finally {
      open.destroy();
      removedOpen?.destroy();
    }
  });

  test('reload with a broken file keeps the running configuration and says what is wrong', async () => {
    const good = (await conn.status()).repositories.length;
    conn.writeRepositories({ docs: { web: 'webdav://nowhere/' } });
    try {
      const r = await conn.cli(['reload']);
      assert.equal(r.code, 2);
      assert.match(
        r.stderr,
        /repositories\.docs\.web: webdav needs a scheme: webdav\+http:\/\/ or webdav\+https:\/\//,
      );
      assert.equal((await conn.status()).repositories.length, good);
    } finally {
      conn.writeRepositories({
        docs: { web: `http://127.0.0.1:${http.port}/wiki`, echo: `tcp://127.0.0.1:${echo.port}` },
      });
    }
  });

  test('ping: round trip to the gateway in ms', async () => {
    const r = await conn.cli(['ping']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^pong from 127\\.0\\.0\\.1:${gw.sshPort} in \\d+\\.\\d ms\\n`));
  });

  test('kill -9 of the gateway, restart: the same lease ports serve again within 10 s', async () => {
    const before = await conn.status();
    const webPort = (await conn.leasePort('docs/web'))!;
    const echoPort = (await conn.leasePort('docs/echo'))!;
    await gw.kill('SIGKILL');
    await waitFor(async () => !(await conn.status()).connected, { what: 'the connector to notice' });
    const down = await conn.status();
    assert.match(down.lastError ?? '', /./);
    await gw.restart();
    // from the moment the gateway is back (its start-up time is not the connector's)
    const t0 = Date.now();
    await waitFor(async () => (await curl(webPort, '/again')).stdout === 'hello from web /again\n', {
      timeout: 10_000,
      interval: 100,
      what: 'the web lease to serve again',
    });
    const back = await tcpExchange(echoPort, 'echo again\n', 11);
    assert.equal(back.toString(), 'echo again\n');
    assert.ok(Date.now() - t0 < 10_000, `served again after ${Date.now() - t0} ms`);
    const after = await conn.status();
    assert.equal(after.connected, true);
    assert.deepEqual(
      after.repositories.map((r) => [r.label, r.leasePort]),
      before.repositories.map((r) => [r.label, r.leasePort]),
    );
  });
});

describe('connector: quota exceeded', () => {
  let gw: TestGateway;
  let http: TestServer;
  let conn: TestConnector | undefined;
  before(async () => {
    [gw, http] = await Promise.all([startGateway(), startHttpServer('q')]);
  });
  after(async () => {
    await conn?.stop();
    await gw?.stop();
    await http?.close();
  });

  test('status names the rejected repositories and the reason; a reload after freeing one retries', async () => {
    const keyFile = await gw.addTenant('small');
    const ch = await gw.tether(['tenants', 'change', '2', 'small']);
    assert.equal(ch.code, 0, ch.stderr);
    const h = `http://127.0.0.1:${http.port}`;
    conn = await startConnector({
      gateway: gw.sshPort,
      tenant: 'small',
      keyFile,
      repositories: { g: { a: h, b: h, c: h } },
      waitActive: false,
    });
    const st = await waitFor(
      async () => {
        const s = await conn!.status();
        return s.repositories.filter((r) => r.state === 'active').length === 2 &&
          s.repositories.some((r) => r.state === 'rejected')
          ? s
          : null;
      },
      { what: 'two active forwards and one rejected' },
    );
    const rejected = st.repositories.find((r) => r.state === 'rejected')!;
    assert.equal(rejected.reason, 'quota exceeded (2 of 2 in use)');
    assert.equal(rejected.leasePort, null);
    const text = await conn.cli(['status']);
    assert.ok(text.stdout.includes(`${rejected.label}`));
    assert.match(text.stdout, /rejected: quota exceeded \(2 of 2 in use\)/);

    const keep = st.repositories.find((r) => r.state === 'active')!.label.split('/')[1]!;
    conn.writeRepositories({ g: { [keep]: h, [rejected.label.split('/')[1]!]: h } });
    const r = await conn.cli(['reload']);
    assert.equal(r.code, 0, r.stderr);
    await conn.leasePort(rejected.label);
  });
});
