import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse as parseYaml, stringify } from 'yaml';
import { generateKeyPair } from '../../src/core/ssh-keys.js';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { delta, key, scrape } from '../helpers/prometheus.js';
import { startEchoServer, startHttpServer, type TestServer, tcpExchange } from '../helpers/servers.js';
import { BIN, run, tempDir, waitFor } from '../helpers/util.js';

// `metrics_listen` in connect.yaml: the connector's own Prometheus endpoint, scraped while real
// traffic goes through a real gateway to real servers.

const WEB = { repository: 'grp/web' };
const ECHO = { repository: 'grp/echo' };

describe('connector metrics: metrics_listen', () => {
  let gw: TestGateway;
  let web: TestServer & { requests: number };
  let echo: TestServer;
  let conn: TestConnector;
  let url: string;

  before(async () => {
    [gw, web, echo] = await Promise.all([startGateway(), startHttpServer('web'), startEchoServer()]);
    const keyFile = await gw.addTenant('acme');
    conn = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile,
      config: { metrics_listen: '127.0.0.1:0', reconnect: { min_delay: '100ms', max_delay: '1s' } },
      repositories: {
        grp: { web: `http://127.0.0.1:${web.port}`, echo: `tcp://127.0.0.1:${echo.port}` },
      },
    });
    url = (
      await conn.output.wait(
        /"event":"connector.metrics_listening".*"url":"(http:\/\/127\.0\.0\.1:\d+\/metrics)"/,
      )
    )[1]!;
  });

  after(async () => {
    await conn?.stop();
    await gw?.stop();
    await web?.close();
    await echo?.close();
  });

  test('the bound address is logged and shown by status --json; only GET /metrics is served', async () => {
    const st = await conn.cli(['status', '--json']);
    assert.equal(st.code, 0, st.stderr);
    assert.equal((JSON.parse(st.stdout) as { metrics: string }).metrics, url);
    const text = await conn.cli(['status']);
    assert.match(text.stdout, new RegExp(`^metrics: ${url.replace(/\./g, '\\.')}$`, 'm'));
    const other = await fetch(url.replace('/metrics', '/'));
    assert.equal(other.status, 404);
    assert.equal(await other.text(), 'only GET /metrics here\n');
    // On loopback: no warning about the address.
    assert.doesNotMatch(conn.output.text(), /connector\.metrics_not_local/);
  });

  test('session, repositories, connections and bytes move by exactly the traffic', async () => {
    const s0 = await scrape(url);
    assert.equal(s0.get(key('tether_connector_connected')), 1);
    assert.equal(s0.get(key('tether_connector_sessions_total')), 1);
    assert.equal(s0.get(key('tether_connector_reconnects_total')), 0);
    assert.equal(s0.get(key('tether_connector_repositories', { state: 'active' })), 2);
    assert.equal(s0.get(key('tether_connector_repositories', { state: 'unreachable' })), 0);
    assert.equal(s0.get(key('tether_connector_quota')), 20);
    assert.ok((s0.get(key('tether_connector_process_resident_memory_bytes')) ?? 0) > 0);

    const webLease = await conn.leasePort('grp/web');
    const echoLease = await conn.leasePort('grp/echo');
    // Three HTTP/1.0 requests (the server closes after each answer): every byte is counted.
    let reqBytes = 0;
    let respBytes = 0;
    for (let i = 0; i < 3; i++) {
      const req = `GET /n${i} HTTP/1.0\r\nHost: web.grp.acme\r\n\r\n`;
      const resp = await tcpExchange(webLease, req);
      assert.match(resp.toString(), new RegExp(`^HTTP/1\\.1 200 OK\\r\\n[^]*hello from web /n${i}\\n$`));
      reqBytes += Buffer.byteLength(req);
      respBytes += resp.length;
    }
    // Two echo connections of 7 000 bytes each way.
    const payload = Buffer.alloc(7_000, 'e');
    for (let i = 0; i < 2; i++) assert.equal((await tcpExchange(echoLease, payload, 7_000)).length, 7_000);

    const s1 = await waitFor(
      async () => {
        const s = await scrape(url);
        return s.get(key('tether_connector_connections_active', WEB)) === 0 &&
          s.get(key('tether_connector_connections_active', ECHO)) === 0 &&
          delta(s0, s, 'tether_connector_bytes_total', { ...ECHO, direction: 'out' }) >= 14_000 &&
          delta(s0, s, 'tether_connector_bytes_total', { ...WEB, direction: 'out' }) >= respBytes
          ? s
          : undefined;
      },
      { what: 'the connections to close and their bytes to be counted' },
    );
    const d = (name: string, labels?: Record<string, string>) => delta(s0, s1, name, labels);
    assert.equal(d('tether_connector_connections_total', WEB), 3);
    assert.equal(d('tether_connector_connections_total', ECHO), 2);
    assert.equal(d('tether_connector_bytes_total', { ...WEB, direction: 'in' }), reqBytes);
    assert.equal(d('tether_connector_bytes_total', { ...WEB, direction: 'out' }), respBytes);
    assert.equal(d('tether_connector_bytes_total', { ...ECHO, direction: 'in' }), 14_000);
    assert.equal(d('tether_connector_bytes_total', { ...ECHO, direction: 'out' }), 14_000);
    assert.equal(d('tether_connector_dial_failures_total', ECHO), 0);
    assert.equal(web.requests, 3);
    // The same figures as `tether connector status` shows.
    const st = await conn.repo('grp/echo');
    assert.equal(st?.bytesIn, s1.get(key('tether_connector_bytes_total', { ...ECHO, direction: 'in' })));
  });

  test('a stopped destination: a dial failure, and the repository turns unreachable', async () => {
    const echoLease = await conn.leasePort('grp/echo');
    const s0 = await scrape(url);
    await echo.close();
    // The caller is closed at once: nothing answers.
    const got = await tcpExchange(echoLease, 'anyone?').catch(() => Buffer.alloc(0));
    assert.equal(got.length, 0);
    const s1 = await waitFor(
      async () => {
        const s = await scrape(url);
        return s.get(key('tether_connector_repositories', { state: 'unreachable' })) === 1 ? s : undefined;
      },
      { what: 'grp/echo unreachable in the metrics' },
    );
    assert.equal(delta(s0, s1, 'tether_connector_dial_failures_total', ECHO), 1);
    assert.equal(delta(s0, s1, 'tether_connector_dial_failures_total', WEB), 0);
    assert.equal(s1.get(key('tether_connector_repositories', { state: 'active' })), 1);
    assert.equal(delta(s0, s1, 'tether_connector_connections_total', ECHO), 0);
    assert.equal((await conn.repo('grp/echo'))?.state, 'unreachable');
  });

  test('the gateway killed and restarted: session down, then one reconnect', async () => {
    const s0 = await scrape(url);
    await gw.kill('SIGKILL');
    const down = await waitFor(
      async () => {
        const s = await scrape(url);
        return s.get(key('tether_connector_connected')) === 0 ? s : undefined;
      },
      { what: 'the session down in the metrics' },
    );
    assert.equal(delta(s0, down, 'tether_connector_disconnects_total'), 1);
    assert.equal(delta(s0, down, 'tether_connector_reconnects_total'), 0);
    await gw.restart();
    const back = await waitFor(
      async () => {
        const s = await scrape(url);
        return s.get(key('tether_connector_connected')) === 1 &&
          s.get(key('tether_connector_repositories', { state: 'active' })) === 1
          ? s
          : undefined;
      },
      { timeout: 20_000, what: 'the session up again in the metrics' },
    );
    assert.equal(delta(s0, back, 'tether_connector_reconnects_total'), 1);
    assert.equal(delta(s0, back, 'tether_connector_sessions_total'), 1);
    assert.equal(delta(s0, back, 'tether_connector_disconnects_total'), 1);
    // Counters of the repositories survive the reconnect.
    assert.equal(delta(s0, back, 'tether_connector_connections_total', WEB), 0);
    assert.equal(delta(s0, back, 'tether_connector_bytes_total', { ...ECHO, direction: 'in' }), 0);
  });

  test('reload: a new metrics_listen waits for a restart, the old address keeps serving', async () => {
    const doc = parseYaml(readFileSync(conn.configFile, 'utf8')) as Record<string, unknown>;
    try {
      writeFileSync(conn.configFile, stringify({ ...doc, metrics_listen: '127.0.0.1:9464' }));
      const r = await conn.cli(['reload']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(
        r.stdout,
        `reloaded: no changes to repositories\nwarning: metrics_listen changed to 127.0.0.1:9464: restart the connector to apply it; until then metrics stay on ${url}\n`,
      );
      await conn.output.wait(/"event":"connector.restart_needed".*"key":"metrics_listen"/);
      assert.equal((await scrape(url)).get(key('tether_connector_connected')), 1);

      // A broken value changes nothing and says what is wrong.
      writeFileSync(conn.configFile, stringify({ ...doc, metrics_listen: 'nonsense' }));
      const bad = await conn.cli(['reload']);
      assert.equal(bad.code, 2);
      assert.equal(
        bad.stderr,
        `tether: ${conn.configFile}: metrics_listen: "nonsense" is not a listen address (use "host:port", e.g. "127.0.0.1:9464"; port 0 picks a free one)\n`,
      );
      assert.equal((await scrape(url)).get(key('tether_connector_connected')), 1);
    } finally {
      writeFileSync(conn.configFile, stringify(doc));
    }
  });
});

describe('connector metrics: bad metrics_listen says what is wrong', { concurrency: 3 }, () => {
  let dir: string;
  let keyFile: string;
  let busy: net.Server;
  let busyPort: number;

  before(async () => {
    dir = tempDir('tether-cm-bad-');
    keyFile = join(dir, 'key');
    writeFileSync(keyFile, generateKeyPair().privateKey, { mode: 0o600 });
    busy = net.createServer((s) => s.end('still mine\n'));
    await new Promise<void>((r) => busy.listen({ host: '127.0.0.1', port: 0 }, () => r()));
    busyPort = (busy.address() as net.AddressInfo).port;
  });

  after(() => new Promise<void>((r) => busy.close(() => r())));

  let n = 0;
  async function runWith(metricsListen: string) {
    const sub = join(dir, `c${++n}`);
    const file = join(dir, `connect-${n}.yaml`);
    const yaml = `gateway: "127.0.0.1:1"\ntenant: acme\nssh_key: "${keyFile}"\nstate_dir: "${sub}"\nmetrics_listen: ${metricsListen}\n`;
    writeFileSync(file, yaml);
    const env = { ...process.env };
    delete env.TETHER_STATE_DIR;
    const r = await run(process.execPath, [BIN, 'connector', 'run', '-c', file], { env, timeout: 15_000 });
    // Nothing is lost or left behind: the file as it was, no pid file, no control socket.
    assert.equal(readFileSync(file, 'utf8'), yaml);
    assert.equal(existsSync(join(sub, 'connector.pid')), false);
    assert.equal(existsSync(join(sub, 'connector.sock')), false);
    return { ...r, file };
  }

  test('not an address', async () => {
    const r = await runWith('nonsense');
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr,
      `tether: ${r.file}: metrics_listen: "nonsense" is not a listen address (use "host:port", e.g. "127.0.0.1:9464"; port 0 picks a free one)\n`,
    );
    assert.equal(r.stdout, '');
  });

  test('port 70000', async () => {
    const r = await runWith('"127.0.0.1:70000"');
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, `tether: ${r.file}: metrics_listen: port 70000 is out of range (0-65535)\n`);
    assert.equal(r.stdout, '');
  });

  test('a port already in use: nothing starts, the port’s owner keeps it', async () => {
    const r = await runWith(`"127.0.0.1:${busyPort}"`);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr,
      `tether: ${r.file}: metrics_listen: cannot listen on 127.0.0.1:${busyPort}: the address is already in use\n`,
    );
    // It never got as far as dialing the gateway.
    assert.doesNotMatch(r.stdout, /connector\.starting|connect_failed/);
    assert.equal((await tcpExchange(busyPort, '')).toString(), 'still mine\n');
  });
});
