import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { connectYaml, startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startEchoServer, type TestServer, tcpExchange } from '../helpers/servers.js';
import { makeCa, makeServerCert, type TestCa } from '../helpers/tls-certs.js';
import { lastError, startSilentServer, startTinyproxy, type TestProxy } from '../helpers/transports.js';
import { BIN, freePort, run, tempDir } from '../helpers/util.js';

/** No proxy settings from the machine running the tests leak in. */
const NO_ENV_PROXY = { https_proxy: '', HTTPS_PROXY: '', no_proxy: '', NO_PROXY: '' };

/** Connectors that can only get out through an HTTP proxy (tinyproxy from Debian). */
describe('tunnel through an HTTP proxy', { concurrency: 4 }, () => {
  let dir: string;
  let ca: TestCa;
  let gw: TestGateway;
  let echo: TestServer;
  let key: string;
  let port443: number;
  let open: TestProxy;
  let guarded: TestProxy;
  let silent: { port: number; close(): Promise<void> };
  let hanging: TestConnector;
  const connectors: TestConnector[] = [];

  before(async () => {
    dir = tempDir('tether-proxy-');
    ca = await makeCa(dir);
    const cert = await makeServerCert(dir, ca, { names: ['localhost', '127.0.0.1'], file: 'gw' });
    port443 = await freePort();
    const both = `127.0.0.1:${port443}`;
    [gw, echo, silent] = await Promise.all([
      startGateway({
        config: {
          tunnel: {
            tls: { listen: both, cert: cert.certFile, key: cert.keyFile },
            websocket: { listen: both, path: '/tunnel', cert: cert.certFile, key: cert.keyFile },
          },
        },
      }),
      startEchoServer(),
      startSilentServer(),
    ]);
    [open, guarded, key] = await Promise.all([
      startTinyproxy({ connectPorts: [port443] }),
      startTinyproxy({ connectPorts: [port443], basicAuth: { user: 'alice', password: 's3cret' } }),
      gw.addTenant('acme'),
    ]);
    // The slowest case (a proxy that never answers) runs alongside the others.
    hanging = await connector(`tls://127.0.0.1:${port443}`, {
      config: { proxy: `http://127.0.0.1:${silent.port}` },
      waitActive: false,
    });
  });

  after(async () => {
    await Promise.all(connectors.map((c) => c.stop()));
    await Promise.all([gw?.stop(), echo?.close(), open?.stop(), guarded?.stop(), silent?.close()]);
  });

  async function connector(
    gateway: string,
    o: {
      label?: string;
      waitActive?: boolean;
      config?: Record<string, unknown>;
      env?: NodeJS.ProcessEnv;
    } = {},
  ): Promise<TestConnector> {
    const c = await startConnector({
      gateway,
      tenant: 'acme',
      keyFile: key,
      repositories: { grp: { [o.label ?? 'echo']: `tcp://127.0.0.1:${echo.port}` } },
      config: { gateway_ca: ca.certFile, ...o.config },
      env: { ...NO_ENV_PROXY, ...o.env },
      waitActive: o.waitActive,
    });
    connectors.push(c);
    return c;
  }

  test('wss:// through tinyproxy from HTTPS_PROXY: traffic through the lease port; status and ping show the proxy', async () => {
    const c = await connector(`wss://127.0.0.1:${port443}/tunnel`, {
      label: 'viaenv',
      env: { HTTPS_PROXY: open.url },
    });
    const port = await c.leasePort('grp/viaenv');
    const payload = Buffer.alloc(512 * 1024, 9);
    assert.ok((await tcpExchange(port, payload, payload.length)).equals(payload));
    const st = await c.status();
    assert.equal(
      st.route,
      `wss to wss://127.0.0.1:${port443}/tunnel via proxy ${open.url} from HTTPS_PROXY, ` +
        `TLS certificate checked against gateway_ca ${ca.certFile}`,
    );
    const ping = await c.cli(['ping']);
    assert.equal(ping.code, 0, ping.stderr);
    assert.match(
      ping.stdout,
      new RegExp(`^ {2}route: wss to .* via proxy ${open.url} from HTTPS_PROXY`, 'm'),
    );
    await open.output.wait(new RegExp(`CONNECT 127\\.0\\.0\\.1:${port443} HTTP/1\\.1`));
    await c.stop();
  });

  test('tls:// through a proxy that wants Basic credentials, given in connect.yaml; the password is shown nowhere', async () => {
    const c = await connector(`tls://127.0.0.1:${port443}`, {
      label: 'viaauth',
      config: { proxy: { url: guarded.url, username: 'alice', password: 's3cret' } },
    });
    const port = await c.leasePort('grp/viaauth');
    assert.equal((await tcpExchange(port, 'authorized', 10)).toString(), 'authorized');
    const st = await c.status();
    assert.match(
      st.route ?? '',
      new RegExp(`via proxy ${guarded.url} \\(user alice\\) from connect\\.yaml proxy`),
    );
    const shown = await c.cli(['config']);
    assert.match(shown.stdout, /password: "?\[redacted\]"?/);
    for (const text of [JSON.stringify(st), shown.stdout, c.output.text(), c.stderr.text()]) {
      assert.ok(!text.includes('s3cret'), 'the proxy password appears nowhere');
    }
    await c.stop();
  });

  test('a proxy that needs credentials and got none: 407 in status', async () => {
    const c = await connector(`tls://127.0.0.1:${port443}`, {
      config: { proxy: guarded.url },
      waitActive: false,
    });
    const st = await lastError(c, /requires credentials/);
    assert.equal(
      st.lastError,
      `the proxy ${guarded.url} from connect.yaml proxy requires credentials (HTTP 407 Proxy Authentication Required; ` +
        'it asks for Basic realm="Tinyproxy"): give them in connect.yaml (proxy: { url, username, password }) ' +
        'or in the proxy URL (http://user:password@host:port)',
    );
    const text = await c.cli(['status']);
    assert.match(text.stdout, /last error: the proxy .* requires credentials \(HTTP 407/);
    await c.stop();
  });

  test('wrong proxy credentials: refused, naming the user and not the password', async () => {
    const url = guarded.url.replace('http://', 'http://alice:wrong-pw@');
    const c = await connector(`wss://127.0.0.1:${port443}/tunnel`, {
      env: { https_proxy: url },
      waitActive: false,
    });
    const st = await lastError(c, /refused the credentials/);
    assert.equal(
      st.lastError,
      `the proxy ${guarded.url} (user alice) from https_proxy refused the credentials of user "alice" (HTTP 401 Unauthorized)`,
    );
    assert.ok(!JSON.stringify(st).includes('wrong-pw'));
    await c.stop();
  });

  test('a proxy that refuses CONNECT to the port: 403 in status (proxy: applies to plain SSH too)', async () => {
    const c = await connector(`127.0.0.1:${gw.sshPort}`, {
      config: { proxy: open.url, gateway_ca: undefined },
      waitActive: false,
    });
    const st = await lastError(c, /HTTP 403/);
    assert.equal(
      st.lastError,
      `the proxy ${open.url} from connect.yaml proxy refused CONNECT to 127.0.0.1:${gw.sshPort} ` +
        '(HTTP 403 Access violation): its rules do not allow this destination or port',
    );
    await c.stop();
  });

  test('NO_PROXY exempts the gateway: the connector goes direct', async () => {
    const dead = await freePort();
    const c = await connector(`tls://127.0.0.1:${port443}`, {
      label: 'direct',
      env: { HTTPS_PROXY: `http://127.0.0.1:${dead}`, NO_PROXY: 'localhost, 127.0.0.0/8' },
    });
    assert.match((await c.status()).route ?? '', /^tls to tls:\/\/127\.0\.0\.1:\d+ \(direct\)/);
    await c.stop();
  });

  test('a proxy nobody listens on: "cannot reach the proxy"', async () => {
    const dead = await freePort();
    const c = await connector(`tls://127.0.0.1:${port443}`, {
      config: { proxy: `127.0.0.1:${dead}` },
      waitActive: false,
    });
    const st = await lastError(c, /cannot reach the proxy/);
    assert.equal(
      st.lastError,
      `cannot reach the proxy http://127.0.0.1:${dead} from connect.yaml proxy: connect ECONNREFUSED 127.0.0.1:${dead}`,
    );
    await c.stop();
  });

  test('a malformed HTTPS_PROXY stops the connector at start with a message', async () => {
    const file = join(dir, 'bad-proxy.yaml');
    writeFileSync(
      file,
      stringify(connectYaml({ gateway: `wss://127.0.0.1:${port443}/tunnel`, tenant: 'acme', keyFile: key })),
    );
    const r = await run(process.execPath, [BIN, 'connector', 'run', '-c', file], {
      env: { ...process.env, ...NO_ENV_PROXY, HTTPS_PROXY: 'socks5://u:secret@10.0.0.1:1080' },
      timeout: 15_000,
    });
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr,
      'tether: HTTPS_PROXY: "socks5://u:***@10.0.0.1:1080": only http:// proxies are supported (the connector sends HTTP CONNECT to them)\n',
    );
  });

  test('a proxy that never answers CONNECT: the timeout is in status', async () => {
    const st = await lastError(hanging, /did not answer/, 40_000);
    assert.equal(
      st.lastError,
      `the proxy http://127.0.0.1:${silent.port} from connect.yaml proxy did not answer CONNECT 127.0.0.1:${port443} within 15000 ms`,
    );
    assert.equal(st.connected, false);
  });
});
