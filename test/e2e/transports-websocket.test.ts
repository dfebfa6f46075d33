import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startEchoServer, type TestServer, tcpExchange } from '../helpers/servers.js';
import { makeCa, makeServerCert, type ServerCert, type TestCa } from '../helpers/tls-certs.js';
import { lastError, startedLine } from '../helpers/transports.js';
import { BIN, freePort, run, tempDir, waitFor } from '../helpers/util.js';

/**
 * The tunnel over WebSocket (tunnel.websocket, gateway: "wss://…"), and one port serving raw
 * TLS and WebSocket at once, the way a single 443 would.
 */
describe('tunnel over WebSocket', { concurrency: 3 }, () => {
  let dir: string;
  let ca: TestCa;
  let cert: ServerCert;
  /** tls and websocket on one port */
  let gw: TestGateway;
  /** websocket only, no tunnel.tls */
  let wsOnly: TestGateway;
  let echo: TestServer;
  let key: string;
  let wsOnlyKey: string;
  let port443: number;
  const connectors: TestConnector[] = [];

  before(async () => {
    dir = tempDir('tether-ws-');
    ca = await makeCa(dir);
    cert = await makeServerCert(dir, ca, { names: ['localhost', '127.0.0.1'], file: 'gw' });
    port443 = await freePort();
    const both = `127.0.0.1:${port443}`;
    [gw, wsOnly, echo] = await Promise.all([
      startGateway({
        config: {
          tunnel: {
            tls: { listen: both, cert: cert.certFile, key: cert.keyFile },
            websocket: { listen: both, path: '/tunnel', cert: cert.certFile, key: cert.keyFile },
          },
        },
      }),
      startGateway({
        config: {
          tunnel: {
            websocket: { listen: '127.0.0.1:0', path: '/t/ssh', cert: cert.certFile, key: cert.keyFile },
          },
        },
      }),
      startEchoServer(),
    ]);
    [key, wsOnlyKey] = await Promise.all([gw.addTenant('acme'), wsOnly.addTenant('acme')]);
  });

  after(async () => {
    await Promise.all(connectors.map((c) => c.stop()));
    await Promise.all([gw?.stop(), wsOnly?.stop(), echo?.close()]);
  });

  async function connector(
    gateway: string,
    o: { label?: string; waitActive?: boolean; keyFile?: string; config?: Record<string, unknown> } = {},
  ): Promise<TestConnector> {
    const c = await startConnector({
      gateway,
      tenant: 'acme',
      keyFile: o.keyFile ?? key,
      repositories: { grp: { [o.label ?? 'echo']: `tcp://127.0.0.1:${echo.port}` } },
      config: { gateway_ca: ca.certFile, ...o.config },
      waitActive: o.waitActive,
    });
    connectors.push(c);
    return c;
  }

  test('the gateway prints both transports on the one port', () => {
    const started = startedLine(gw);
    assert.equal(started.tunnel_tls, `tls://127.0.0.1:${port443}`);
    assert.equal(started.tunnel_websocket, `wss://127.0.0.1:${port443}/tunnel`);
  });

  test('one port carries a wss:// and a tls:// connector at once; concurrent streams through both lease ports, each intact', async () => {
    const [ws, raw] = await Promise.all([
      connector(`wss://127.0.0.1:${port443}/tunnel`, { label: 'viaws' }),
      connector(`tls://127.0.0.1:${port443}`, { label: 'viatls' }),
    ]);
    const [wsPort, tlsPort] = await Promise.all([ws.leasePort('grp/viaws'), raw.leasePort('grp/viatls')]);
    // Distinct random bytes per stream, several streams at once each way: both ends send packets
    // from rooms used again once their write is done (packet-read.ts), here through a TLS socket
    // and a WebSocket stream instead of a TCP socket. A room used again too early would show as
    // another stream's bytes.
    const payloads = (n: number) => Array.from({ length: n }, () => randomBytes(3 * 1024 * 1024));
    const [viaWs, viaTls] = [payloads(3), payloads(3)];
    const [wsBack, tlsBack] = await Promise.all([
      Promise.all(viaWs.map((p) => tcpExchange(wsPort, p, p.length))),
      Promise.all(viaTls.map((p) => tcpExchange(tlsPort, p, p.length))),
    ]);
    for (const [i, p] of viaWs.entries())
      assert.ok(wsBack[i]!.equals(p), `stream ${i} came back intact through the WebSocket tunnel`);
    for (const [i, p] of viaTls.entries())
      assert.ok(tlsBack[i]!.equals(p), `stream ${i} came back intact through the TLS tunnel`);

    const st = await ws.status();
    assert.equal(st.transport, 'wss');
    assert.equal(st.gateway, `wss://127.0.0.1:${port443}/tunnel`);
    assert.match(
      st.route ?? '',
      /^wss to wss:\/\/127\.0\.0\.1:\d+\/tunnel \(direct\), TLS certificate checked/,
    );
    const ping = await ws.cli(['ping']);
    assert.equal(ping.code, 0, ping.stderr);
    assert.match(ping.stdout, /^pong from wss:\/\/127\.0\.0\.1:\d+\/tunnel in \d+\.\d ms$/m);
    assert.match(ping.stdout, /^ {2}route: wss to wss:\/\/127\.0\.0\.1:\d+\/tunnel \(direct\)/m);
    await Promise.all([ws.stop(), raw.stop()]);
  });

  test('HTTPS without an upgrade: 426 on the tunnel path, 404 elsewhere', async () => {
    const curl = (path: string) =>
      run('curl', [
        '-sS',
        '--cacert',
        ca.certFile,
        '-o',
        '-',
        '-w',
        '\n%{http_code}',
        `https://127.0.0.1:${port443}${path}`,
      ]);
    const [onPath, elsewhere] = await Promise.all([curl('/tunnel'), curl('/')]);
    assert.match(onPath.stdout, /this is a Tether tunnel endpoint.*\n426$/s);
    assert.match(elsewhere.stdout, /^not found\n\n404$/);
  });

  test('init, register and unregister work over wss:// (enrollment through the WebSocket)', async () => {
    const home = tempDir('tether-ws-enroll-');
    const cfg = join(home, 'connect.yaml');
    const env: NodeJS.ProcessEnv = { ...process.env, https_proxy: '', HTTPS_PROXY: '' };
    delete env.TETHER_STATE_DIR;
    delete env.TETHER_CONNECT_CONFIG;
    const tether = (args: string[]) => run(process.execPath, [BIN, ...args], { env });
    const gateway = `wss://127.0.0.1:${port443}/tunnel`;
    const init = await tether(['connector', 'init', '-c', cfg, '--gateway', gateway]);
    assert.equal(init.code, 0, init.stderr);
    writeFileSync(
      cfg,
      readFileSync(cfg, 'utf8').replace(/^# gateway_ca: .*$/m, `gateway_ca: "${ca.certFile}"`),
    );
    const tok = await gw.tether(['tenants', 'enroll', 'acme']);
    assert.equal(tok.code, 0, tok.stderr);
    const reg = await tether(['connector', 'register', '--token', tok.stdout.trim(), '-c', cfg]);
    assert.equal(reg.code, 0, reg.stderr);
    assert.match(
      reg.stdout,
      new RegExp(`enrolled key SHA256:\\S+ with tenant acme at ${gateway.replace(/\./g, '\\.')}`),
    );
    const ping = await tether(['connector', 'ping', '-c', cfg]);
    assert.equal(ping.code, 0, ping.stderr);
    assert.match(ping.stdout, /^ {2}route: wss to wss:\/\/127\.0\.0\.1:\d+\/tunnel \(direct\)/m);
    const un = await tether(['connector', 'unregister', '-c', cfg]);
    assert.equal(un.code, 0, un.stderr);
    assert.match(
      un.stdout,
      new RegExp(`^removed key SHA256:\\S+ from tenant acme at ${gateway.replace(/\./g, '\\.')}$`, 'm'),
    );
  });

  test('reload moves a running connector from tls:// to wss://; the lease port stays', async () => {
    const c = await connector(`tls://127.0.0.1:${port443}`, { label: 'moving' });
    const before = await c.leasePort('grp/moving');
    writeFileSync(
      c.configFile,
      readFileSync(c.configFile, 'utf8').replace(
        /^gateway: .*$/m,
        `gateway: wss://127.0.0.1:${port443}/tunnel`,
      ),
    );
    const r = await c.cli(['reload']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /reconnecting with the new gateway settings/);
    const st = await waitFor(
      async () => {
        const s = await c.status();
        return s.connected && s.transport === 'wss' && s.repositories[0]?.state === 'active' ? s : null;
      },
      { timeout: 15_000, what: 'the connector back on wss://' },
    );
    assert.equal(st.repositories[0]?.leasePort, before);
    assert.equal((await tcpExchange(before, 'moved', 5)).toString(), 'moved');
    await c.stop();
  });

  test('a WebSocket path that does not exist: HTTP 404, named in status and in the gateway log', async () => {
    const c = await connector(`wss://127.0.0.1:${port443}/nope`, { waitActive: false });
    const st = await lastError(c, /no WebSocket tunnel/);
    assert.equal(
      st.lastError,
      `wss://127.0.0.1:${port443}/nope: the gateway has no WebSocket tunnel at /nope ` +
        '(HTTP 404 Not Found: no WebSocket tunnel at /nope); check the path in gateway: "wss://host/path"',
    );
    await gw.output.wait(/"event":"tunnel\.websocket_not_found".*"path":"\/nope"/);
    await c.stop();
  });

  test('TLS to the plain SSH port of a gateway without tunnel.tls: "does not speak TLS", and the gateway logs why', async () => {
    const c = await connector(`tls://127.0.0.1:${wsOnly.sshPort}`, { waitActive: false, keyFile: wsOnlyKey });
    const st = await lastError(c, /does not speak TLS/);
    assert.equal(
      st.lastError,
      `tls://127.0.0.1:${wsOnly.sshPort} does not speak TLS (it answered in plain text; is that the plain SSH port? ` +
        'use "host:port" without tls://, or the gateway\'s TLS port)',
    );
    await wsOnly.output.wait(/"event":"tunnel\.tls_not_configured".*tunnel\.tls is not configured/);
    await c.stop();
  });

  test('raw TLS to a WebSocket-only port: told to use wss:// with the path', async () => {
    const addr = startedLine(wsOnly).tunnel_websocket!;
    const port = Number(/:(\d+)\//.exec(addr)![1]);
    const c = await connector(`tls://127.0.0.1:${port}`, { waitActive: false, keyFile: wsOnlyKey });
    const st = await lastError(c, /refused the connection/);
    assert.equal(
      st.lastError,
      `the gateway at tls://127.0.0.1:${port} refused the connection: this port carries WebSocket tunnels only; ` +
        'in connect.yaml use gateway: "wss://host:port/t/ssh"',
    );
    // …and wss:// with the right path works there.
    const ok = await connector(addr, { keyFile: wsOnlyKey, label: 'ok' });
    assert.equal((await tcpExchange(await ok.leasePort('grp/ok'), 'ws only', 7)).toString(), 'ws only');
    await Promise.all([c.stop(), ok.stop()]);
  });
});
