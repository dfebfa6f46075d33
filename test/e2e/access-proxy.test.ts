import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { type SshForward, sshForward } from '../helpers/openssh.js';
import { startEchoServer, startHttpServer, type TestServer } from '../helpers/servers.js';
import { selfSignedCert } from '../helpers/tls-certs.js';
import { nextEvent, run, tempDir, waitFor } from '../helpers/util.js';

const HEADER_TIMEOUT_MS = 1500;

interface ProxyAnswer {
  status: number;
  statusText: string;
  headers: Record<string, string>;
  body: string;
  /** Bytes after the head (tunnelled data that came with it). */
  rest: Buffer;
  socket: net.Socket;
}

const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;

/**
 * Sends a raw request head to the proxy and reads its answer. For a 200 to CONNECT the socket
 * stays open (the tunnel); otherwise the body is read up to Content-Length.
 */
function proxyRequest(
  port: number,
  head: string | Buffer,
  opts: { localAddress?: string; timeout?: number } = {},
): Promise<ProxyAnswer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress: opts.localAddress });
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new Error(
          `no complete answer within ${opts.timeout ?? 10_000} ms; got ${JSON.stringify(buf.toString())}`,
        ),
      );
    }, opts.timeout ?? 10_000);
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.on('connect', () => socket.write(head));
    const onData = (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
      const m = /^HTTP\/1\.[01] (\d{3}) ?(.*)$/.exec(lines[0] ?? '');
      if (!m) {
        clearTimeout(timer);
        socket.destroy();
        reject(new Error(`not an HTTP answer: ${JSON.stringify(lines[0])}`));
        return;
      }
      const headers: Record<string, string> = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      const rest = buf.subarray(end + 4);
      const status = Number(m[1]);
      const len = headers['content-length'] === undefined ? 0 : Number(headers['content-length']);
      if (status !== 200 && rest.length < len) return;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.pause();
      resolve({
        status,
        statusText: m[2] ?? '',
        headers,
        body: rest.subarray(0, len).toString(),
        rest: rest.subarray(len),
        socket,
      });
    };
    socket.on('data', onData);
  });
}

function connectHead(authority: string, auth?: string, extra = ''): string {
  return `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${auth === undefined ? '' : `Proxy-Authorization: ${auth}\r\n`}${extra}\r\n`;
}

/** Writes through an open tunnel and waits for `expect` to come back. */
async function echoThrough(s: net.Socket, text: string): Promise<string> {
  s.resume();
  return new Promise((resolve, reject) => {
    let got = '';
    const t = setTimeout(() => reject(new Error(`echo timed out, got ${JSON.stringify(got)}`)), 5_000);
    const onData = (c: Buffer) => {
      got += c.toString();
      if (got.length >= text.length) {
        clearTimeout(t);
        s.off('data', onData);
        resolve(got);
      }
    };
    s.on('data', onData);
    s.write(text);
  });
}

interface RepoListing {
  groups: Array<{ group: string; key: string; repositories: Array<{ repository: string; state: string }> }>;
}

async function groupKey(gw: TestGateway, tenant: string, group: string): Promise<string> {
  const r = await gw.api('GET', `/v1/tenants/${tenant}/repositories`);
  assert.equal(r.status, 200);
  const g = (r.json as RepoListing).groups.find((x) => x.group === group);
  assert.ok(g, `group ${group} listed`);
  return g.key;
}

/** Port of the access proxy, from the gateway's start line. */
async function proxyPort(gw: TestGateway): Promise<number> {
  const m = await gw.output.wait(/"event":"gateway.started".*"access_proxy":"127\.0\.0\.1:(\d+)"/);
  return Number(m[1]);
}

describe('access proxy (HTTP CONNECT and absolute-form) in front of a real connector', () => {
  let gw: TestGateway;
  let port: number;
  let site: TestServer;
  let echo: TestServer;
  let tlsSite: https.Server;
  let upload: http.Server;
  let uploadPort: number;
  let tlsPort: number;
  let acme: TestConnector;
  let other: TestConnector;
  let plain: SshForward;
  let acmeKey: string;
  let otherKey: string;
  let auditFile: string;

  before(async () => {
    auditFile = join(tempDir('tether-ap-audit-'), 'audit.log');
    gw = await startGateway({
      config: {
        log: { audit: `file:${auditFile}` },
        access_proxy: {
          listen: '127.0.0.1:0',
          header_timeout: `${HEADER_TIMEOUT_MS}ms`,
          max_failures: 3,
          failure_window: '60s',
        },
      },
    });
    port = await proxyPort(gw);
    site = await startHttpServer('site');
    upload = http.createServer((req, res) => {
      let n = 0;
      req.on('data', (c: Buffer) => {
        n += c.length;
      });
      req.on('end', () =>
        res.end(
          `${req.method} ${req.url} host=${req.headers.host} xfh=${req.headers['x-forwarded-host']} auth=${req.headers['proxy-authorization'] ?? '-'} got ${n} bytes\n`,
        ),
      );
    });
    await new Promise<void>((r) => upload.listen(0, '127.0.0.1', () => r()));
    uploadPort = (upload.address() as net.AddressInfo).port;
    echo = await startEchoServer();
    // An https server with a self-signed certificate: the gateway must refuse it by default.
    const dir = tempDir('tether-ap-tls-');
    const tls = selfSignedCert(dir);
    tlsSite = https.createServer({ key: tls.key, cert: tls.cert }, (_req, res) => res.end('secret\n'));
    await new Promise<void>((r) => tlsSite.listen(0, '127.0.0.1', () => r()));
    tlsPort = (tlsSite.address() as net.AddressInfo).port;

    const acmeKeyFile = await gw.addTenant('acme');
    const otherKeyFile = await gw.addTenant('other');
    acme = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile: acmeKeyFile,
      repositories: {
        grp: {
          site: `http://127.0.0.1:${site.port}`,
          echo: `tcp://127.0.0.1:${echo.port}`,
          secure: `https://127.0.0.1:${tlsPort}`,
          upload: `http://127.0.0.1:${uploadPort}`,
        },
        Docs: { Wiki: `webdav+http://127.0.0.1:${site.port}/dav` },
      },
    });
    other = await startConnector({
      gateway: gw.sshPort,
      tenant: 'other',
      keyFile: otherKeyFile,
      repositories: { grp: { web: `http://127.0.0.1:${site.port}` } },
    });
    // Plain OpenSSH: a forward without repository metadata; stopped later for the offline case.
    plain = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'acme',
      keyFile: acmeKeyFile,
      forwards: [{ label: 'grp/plain', port: echo.port }],
    });
    assert.ok(plain.ports.get('grp/plain'), 'plain OpenSSH forward granted');
    acmeKey = await groupKey(gw, 'acme', 'grp');
    otherKey = await groupKey(gw, 'other', 'grp');
  });

  after(async () => {
    await plain?.stop();
    await acme?.stop();
    await other?.stop();
    await gw?.stop();
    await site?.close();
    await echo?.close();
    await new Promise<void>((r) => (tlsSite ? tlsSite.close(() => r()) : r()));
    upload?.closeAllConnections();
    await new Promise<void>((r) => (upload ? upload.close(() => r()) : r()));
  });

  test('group keys exist as soon as a forward of the group is online (before anyone lists the directory)', async () => {
    const db = new Database(join(gw.dataDir, 'tether.db'), { readonly: true, fileMustExist: true });
    try {
      const rows = db
        .prepare('SELECT tenant_id, group_name FROM group_keys ORDER BY tenant_id, group_name')
        .all() as Array<{ tenant_id: string; group_name: string }>;
      // "Docs" was never listed through the directory (groupKey() above only asked for "grp").
      assert.ok(
        rows.some((r) => r.tenant_id === 'acme' && r.group_name === 'Docs'),
        JSON.stringify(rows),
      );
    } finally {
      db.close();
    }
  });

  test('curl -x: a plain proxied GET reaches the HTTP server behind the connector', async () => {
    const r = await run('curl', [
      '-sS',
      '-m',
      '10',
      '-i',
      '-x',
      `http://127.0.0.1:${port}`,
      '--proxy-user',
      `acme:${acmeKey}`,
      'http://site.grp.acme/hello?x=1',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^HTTP\/1\.1 200 OK/);
    assert.match(r.stdout, /\r\nVia: 1\.1 tether\r\n/i);
    assert.match(r.stdout, /hello from site \/hello\?x=1\n$/);
    // Several requests over one kept-alive client connection, and a request body.
    const two = await run('curl', [
      '-sS',
      '-m',
      '10',
      '-x',
      `http://127.0.0.1:${port}`,
      '-U',
      `acme:${acmeKey}`,
      'http://site.grp.acme/a',
      'http://site.grp.acme/b',
    ]);
    assert.equal(two.stdout, 'hello from site /a\nhello from site /b\n');
    const bodyFile = join(tempDir('tether-ap-body-'), 'body');
    writeFileSync(bodyFile, Buffer.alloc(3_000_000, 'x'));
    // A request body; Host becomes the destination, the proxy's credentials are not passed on.
    const post = await run('curl', [
      '-sS',
      '-m',
      '10',
      '-x',
      `http://127.0.0.1:${port}`,
      '-U',
      `acme:${acmeKey}`,
      '--data-binary',
      `@${bodyFile}`,
      'http://upload.grp.acme/post?q',
    ]);
    assert.equal(post.code, 0, post.stderr);
    assert.equal(
      post.stdout,
      `POST /post?q host=127.0.0.1:${uploadPort} xfh=upload.grp.acme auth=- got 3000000 bytes\n`,
    );
  });

  test('curl -x to a webdav+http repository, with a case-insensitive name', async () => {
    const docsKey = await groupKey(gw, 'acme', 'Docs');
    const r = await run('curl', [
      '-sS',
      '-m',
      '10',
      '-x',
      `http://127.0.0.1:${port}`,
      '-U',
      `acme:${docsKey}`,
      'http://wiki.docs.acme/dav/page',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello from site /dav/page\n');
  });

  test('curl -p -x: a CONNECT tunnel carries HTTP to the server behind the connector', async () => {
    const r = await run('curl', [
      '-sS',
      '-m',
      '10',
      '-p',
      '-x',
      `http://127.0.0.1:${port}`,
      '--proxy-user',
      `acme:${acmeKey}`,
      'http://site.grp.acme/tunnel',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello from site /tunnel\n');
  });

  test('CONNECT to a tcp repository: 200 Connection established, then raw bytes both ways (any port)', async () => {
    const a = await proxyRequest(port, connectHead('echo.grp.acme:7', basic('acme', acmeKey)));
    assert.equal(a.status, 200);
    assert.equal(a.statusText, 'Connection established');
    assert.equal(await echoThrough(a.socket, 'ping\n'), 'ping\n');
    const big = 'z'.repeat(300_000);
    assert.equal(await echoThrough(a.socket, big), big);
    a.socket.destroy();
    // Bytes sent right behind the CONNECT head reach the repository too.
    const b = await proxyRequest(
      port,
      Buffer.concat([
        Buffer.from(connectHead('echo.grp.acme:1', basic('acme', acmeKey))),
        Buffer.from('early\n'),
      ]),
    );
    assert.equal(b.status, 200);
    b.socket.resume();
    const got =
      b.rest.toString() +
      (b.rest.length >= 6
        ? ''
        : await new Promise<string>((r) => b.socket.once('data', (c: Buffer) => r(c.toString()))));
    assert.equal(got, 'early\n');
    b.socket.destroy();
    await gw.output.wait(/"event":"access_proxy.allowed".*"method":"CONNECT".*"repository":"echo.grp.acme"/);
  });

  test('missing credentials: 407 with Proxy-Authenticate (curl reports it)', async () => {
    const a = await proxyRequest(port, connectHead('echo.grp.acme:443'));
    assert.equal(a.status, 407);
    assert.equal(a.headers['proxy-authenticate'], 'Basic realm="tether", charset="UTF-8"');
    assert.match(a.body, /proxy authentication required/);
    a.socket.destroy();
    const c = await run('curl', [
      '-sS',
      '-m',
      '10',
      '-p',
      '-x',
      `http://127.0.0.1:${port}`,
      'http://site.grp.acme/',
    ]);
    assert.equal(c.code, 56);
    assert.match(c.stderr, /407/);
    const p = await run('curl', [
      '-sS',
      '-m',
      '10',
      '-i',
      '-x',
      `http://127.0.0.1:${port}`,
      'http://site.grp.acme/',
    ]);
    assert.match(p.stdout, /^HTTP\/1\.1 407 Proxy Authentication Required\r\n/);
    assert.match(p.stdout, /\r\nProxy-Authenticate: Basic realm="tether"/);
  });

  test('a wrong key: 403, and the key is compared per group', async () => {
    const a = await proxyRequest(port, connectHead('echo.grp.acme:443', basic('acme', 'not-the-key')), {
      localAddress: '127.0.0.2',
    });
    assert.equal(a.status, 403);
    assert.equal(a.headers['x-tether-error'], 'WRONG_GROUP_KEY');
    assert.match(a.body, /wrong group key for group grp of tenant acme/);
    a.socket.destroy();
    // The key of group grp does not open group Docs.
    const b = await proxyRequest(port, connectHead('wiki.Docs.acme:80', basic('acme', acmeKey)), {
      localAddress: '127.0.0.2',
    });
    assert.equal(b.status, 403);
    b.socket.destroy();
    const c = await run('curl', [
      '-sS',
      '-m',
      '10',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '--interface',
      '127.0.0.3',
      '-x',
      `http://127.0.0.1:${port}`,
      '-U',
      'acme:nope',
      'http://site.grp.acme/',
    ]);
    assert.equal(c.stdout, '403');
    await gw.output.wait(/"event":"access_proxy.denied".*"source":"127.0.0.2".*"code":"WRONG_GROUP_KEY"/);
  });

  test("CONNECT to another tenant's repository with this tenant's key: 403", async () => {
    const a = await proxyRequest(port, connectHead('web.grp.other:80', basic('acme', acmeKey)), {
      localAddress: '127.0.0.4',
    });
    assert.equal(a.status, 403);
    assert.equal(a.headers['x-tether-error'], 'TENANT_MISMATCH');
    assert.match(a.body, /these credentials are not for tenant other/);
    a.socket.destroy();
    const b = await proxyRequest(port, connectHead('web.grp.other:80', basic('other', acmeKey)), {
      localAddress: '127.0.0.4',
    });
    assert.equal(b.status, 403);
    assert.equal(b.headers['x-tether-error'], 'WRONG_GROUP_KEY');
    b.socket.destroy();
    const ok = await proxyRequest(port, connectHead('web.grp.other:80', basic('other', otherKey)), {
      localAddress: '127.0.0.5',
    });
    assert.equal(ok.status, 200);
    ok.socket.destroy();
  });

  test('an unknown repository: 404 (with a valid key of its group)', async () => {
    const a = await proxyRequest(port, connectHead('nope.grp.acme:443', basic('acme', acmeKey)));
    assert.equal(a.status, 404);
    assert.equal(a.body, 'no repository nope.grp.acme\n');
    a.socket.destroy();
    // A group nobody has: no key can match, so 403 (nothing is revealed about what exists).
    const b = await proxyRequest(port, connectHead('x.nogroup.acme:443', basic('acme', acmeKey)), {
      localAddress: '127.0.0.6',
    });
    assert.equal(b.status, 403);
    b.socket.destroy();
  });

  test('absolute-form requests only for HTTP-based repositories; origin-form and https:// are refused', async () => {
    const tcp = await proxyRequest(
      port,
      `GET http://echo.grp.acme/ HTTP/1.1\r\nHost: echo.grp.acme\r\nProxy-Authorization: ${basic('acme', acmeKey)}\r\n\r\n`,
    );
    assert.equal(tcp.status, 400);
    assert.equal(tcp.body, 'repository echo.grp.acme is a tcp service; reach it through CONNECT\n');
    tcp.socket.destroy();
    const unknown = await proxyRequest(
      port,
      `GET http://plain.grp.acme/ HTTP/1.1\r\nHost: plain.grp.acme\r\nProxy-Authorization: ${basic('acme', acmeKey)}\r\n\r\n`,
    );
    assert.equal(unknown.status, 400);
    assert.match(unknown.body, /unknown service .*reach it through CONNECT/);
    unknown.socket.destroy();
    const origin = await proxyRequest(port, 'GET / HTTP/1.1\r\nHost: site.grp.acme\r\n\r\n');
    assert.equal(origin.status, 400);
    assert.match(origin.body, /this is the Tether access proxy/);
    origin.socket.destroy();
    const upgrade = await proxyRequest(
      port,
      `GET http://site.grp.acme/ws HTTP/1.1\r\nHost: site.grp.acme\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nProxy-Authorization: ${basic('acme', acmeKey)}\r\n\r\n`,
    );
    assert.equal(upgrade.status, 400);
    assert.equal(upgrade.body, 'protocol upgrades are not proxied in absolute form; use CONNECT\n');
    upgrade.socket.destroy();
    const tlsForm = await proxyRequest(
      port,
      'GET https://site.grp.acme/ HTTP/1.1\r\nHost: site.grp.acme\r\n\r\n',
    );
    assert.equal(tlsForm.status, 400);
    assert.match(tlsForm.body, /https:\/\/ URLs go through CONNECT/);
    tlsForm.socket.destroy();
  });

  test('an https repository in absolute form: the gateway speaks TLS and refuses an unverifiable certificate (502)', async () => {
    const r = await run('curl', [
      '-sS',
      '-m',
      '10',
      '-i',
      '-x',
      `http://127.0.0.1:${port}`,
      '-U',
      `acme:${acmeKey}`,
      'http://secure.grp.acme/',
    ]);
    assert.match(r.stdout, /^HTTP\/1\.1 502 Bad Gateway/);
    assert.match(
      r.stdout,
      /the repository's TLS certificate was not accepted \((DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN)\)/,
    );
    // Through CONNECT the client does TLS end to end.
    const t = await run('curl', [
      '-sS',
      '-m',
      '10',
      '-k',
      '-x',
      `http://127.0.0.1:${port}`,
      '-U',
      `acme:${acmeKey}`,
      'https://secure.grp.acme/',
    ]);
    assert.equal(t.code, 0, t.stderr);
    assert.equal(t.stdout, 'secret\n');
  });

  test('malformed authorities: 400 with the reason', async () => {
    const cases: Array<[string, RegExp]> = [
      ['grp.acme:443', /missing parts in "grp.acme"/],
      ['acme:443', /missing parts/],
      ['.grp.acme:443', /empty repository/],
      ['a.echo.grp.acme:443', /too many dots/],
      ['echo.grp.acme.:443', /too many dots/],
      [`${'r'.repeat(64)}.grp.acme:443`, /repository name longer than 63 characters/],
      [`echo.${'g'.repeat(64)}.acme:443`, /group name longer than 63 characters/],
      ['échο.grp.acme:443', /non-ASCII/],
      ['echo.grp.acme:99999', /invalid port/],
      ['[::1]:22', /IP address/],
      ['user@echo.grp.acme:443', /user information/],
      ['ec!ho.grp.acme:443', /invalid repository name/],
    ];
    for (const [authority, re] of cases) {
      const a = await proxyRequest(port, Buffer.from(connectHead(authority, basic('acme', acmeKey)), 'utf8'));
      assert.equal(a.status, 400, authority);
      assert.equal(a.headers['x-tether-error'], 'BAD_REPOSITORY_ADDRESS', authority);
      assert.match(a.body, /^bad repository address: /, authority);
      assert.match(a.body, re, authority);
      a.socket.destroy();
    }
    // The same in absolute form.
    const r = await run('curl', [
      '-sS',
      '-m',
      '10',
      '-x',
      `http://127.0.0.1:${port}`,
      '-U',
      `acme:${acmeKey}`,
      'http://site.acme/',
    ]);
    assert.match(r.stdout, /bad repository address: missing parts in "site.acme"/);
  });

  test('malformed or non-Basic Proxy-Authorization: 407 for another scheme, 400 for bad Basic', async () => {
    const scheme = await proxyRequest(port, connectHead('echo.grp.acme:443', 'Bearer abc'));
    assert.equal(scheme.status, 407);
    assert.ok(scheme.headers['proxy-authenticate']);
    assert.match(scheme.body, /only Basic proxy authentication is supported/);
    scheme.socket.destroy();
    const cases: Array<[string, RegExp]> = [
      ['Basic !!notbase64!!', /not valid base64/],
      ['Basic YWNtZQ=', /not valid base64/],
      [`Basic ${Buffer.from('acme-without-colon').toString('base64')}`, /<tenant>:<group key>/],
      ['Basic', /empty/],
      [`Basic ${Buffer.from([0x61, 0x3a, 0xff]).toString('base64')}`, /not UTF-8/],
    ];
    for (const [auth, re] of cases) {
      const a = await proxyRequest(port, connectHead('echo.grp.acme:443', auth));
      assert.equal(a.status, 400, auth);
      assert.equal(a.headers['x-tether-error'], 'PROXY_AUTHORIZATION_MALFORMED', auth);
      assert.match(a.body, re, auth);
      a.socket.destroy();
    }
  });

  test('a header block over 16 KiB: 431', async () => {
    const a = await proxyRequest(
      port,
      connectHead('echo.grp.acme:443', basic('acme', acmeKey), `X-Pad: ${'p'.repeat(17 * 1024)}\r\n`),
    );
    assert.equal(a.status, 431);
    a.socket.destroy();
    const c = await run('curl', [
      '-sS',
      '-m',
      '10',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '-x',
      `http://127.0.0.1:${port}`,
      '-U',
      `acme:${acmeKey}`,
      '-H',
      `X-Pad: ${'p'.repeat(17 * 1024)}`,
      'http://site.grp.acme/',
    ]);
    assert.equal(c.stdout, '431');
    // Just under the limit still works.
    const ok = await proxyRequest(
      port,
      connectHead('echo.grp.acme:443', basic('acme', acmeKey), `X-Pad: ${'p'.repeat(15 * 1024)}\r\n`),
    );
    assert.equal(ok.status, 200);
    ok.socket.destroy();
  });

  test('a client that connects and sends nothing is closed after the header timeout', async () => {
    const s = net.connect({ host: '127.0.0.1', port });
    await nextEvent(s, 'connect');
    const t0 = Date.now();
    s.resume();
    s.on('error', () => {});
    await new Promise<void>((r) => s.once('close', () => r()));
    const took = Date.now() - t0;
    assert.ok(took >= HEADER_TIMEOUT_MS - 100 && took < HEADER_TIMEOUT_MS + 3_000, `closed after ${took} ms`);
    // A client that sends half a head and stops is closed too.
    const half = net.connect({ host: '127.0.0.1', port });
    half.on('error', () => {});
    half.write('CONNECT echo.grp.acme:443 HTTP/1.1\r\nHost: x\r\n');
    const t1 = Date.now();
    half.resume();
    await new Promise<void>((r) => half.once('close', () => r()));
    assert.ok(Date.now() - t1 < HEADER_TIMEOUT_MS + 3_000);
  });

  test('the offline case: a known repository whose connector is gone gives 503', async () => {
    const before = await proxyRequest(port, connectHead('plain.grp.acme:22', basic('acme', acmeKey)));
    assert.equal(before.status, 200);
    assert.equal(await echoThrough(before.socket, 'x\n'), 'x\n');
    before.socket.destroy();
    await plain.stop();
    await waitFor(
      async () => {
        const r = await gw.api('GET', '/v1/tenants/acme/repositories');
        const g = (r.json as RepoListing).groups.find((x) => x.group === 'grp');
        return g?.repositories.find((x) => x.repository === 'plain')?.state === 'offline';
      },
      { what: 'grp/plain to go offline' },
    );
    const a = await proxyRequest(port, connectHead('plain.grp.acme:22', basic('acme', acmeKey)));
    assert.equal(a.status, 503);
    assert.equal(a.headers['x-tether-error'], 'FORWARD_OFFLINE');
    assert.equal(a.body, 'repository plain.grp.acme is offline (its connector is not connected)\n');
    a.socket.destroy();
    const c = await run('curl', [
      '-sS',
      '-m',
      '10',
      '-p',
      '-x',
      `http://127.0.0.1:${port}`,
      '-U',
      `acme:${acmeKey}`,
      'http://plain.grp.acme/',
    ]);
    assert.equal(c.code, 56);
    assert.match(c.stderr, /503/);
  });

  test('wrong keys are throttled per source address (429), other addresses are not affected', async () => {
    const from = '127.0.0.9';
    for (let i = 0; i < 3; i++) {
      const a = await proxyRequest(port, connectHead('echo.grp.acme:443', basic('acme', `wrong-${i}`)), {
        localAddress: from,
      });
      assert.equal(a.status, 403);
      a.socket.destroy();
    }
    const blocked = await proxyRequest(port, connectHead('echo.grp.acme:443', basic('acme', acmeKey)), {
      localAddress: from,
    });
    assert.equal(blocked.status, 429);
    assert.equal(blocked.headers['x-tether-error'], 'TOO_MANY_FAILURES');
    assert.ok(Number(blocked.headers['retry-after']) > 0);
    blocked.socket.destroy();
    const elsewhere = await proxyRequest(port, connectHead('echo.grp.acme:443', basic('acme', acmeKey)), {
      localAddress: '127.0.0.10',
    });
    assert.equal(elsewhere.status, 200);
    elsewhere.socket.destroy();
  });

  test('rotation: open tunnels stay, new ones need the new key', async () => {
    const key1 = await groupKey(gw, 'acme', 'grp');
    const open = await proxyRequest(port, connectHead('echo.grp.acme:443', basic('acme', key1)));
    assert.equal(open.status, 200);
    assert.equal(await echoThrough(open.socket, 'before\n'), 'before\n');
    const rot = await gw.api('POST', '/v1/tenants/acme/groups/grp/key');
    assert.equal(rot.status, 200);
    const key2 = (rot.json as { key: string }).key;
    assert.notEqual(key2, key1);
    assert.equal(await echoThrough(open.socket, 'after\n'), 'after\n');
    const old = await proxyRequest(port, connectHead('echo.grp.acme:443', basic('acme', key1)), {
      localAddress: '127.0.0.11',
    });
    assert.equal(old.status, 403);
    old.socket.destroy();
    const fresh = await proxyRequest(port, connectHead('echo.grp.acme:443', basic('acme', key2)));
    assert.equal(fresh.status, 200);
    assert.equal(await echoThrough(fresh.socket, 'new\n'), 'new\n');
    fresh.socket.destroy();
    assert.equal(await echoThrough(open.socket, 'still\n'), 'still\n');
    open.socket.destroy();
    acmeKey = key2;
  });

  test('every decision is an audit event, and no key is ever logged', async () => {
    await gw.output.wait(/"event":"access_proxy.denied".*"code":"TENANT_MISMATCH"/);
    await gw.output.wait(/"event":"access_proxy.denied".*"status":431/);
    await gw.output.wait(/"event":"access_proxy.idle_closed"/);
    // The audit log (log.audit) gets the same decisions.
    const audit = await waitFor(
      () => {
        const text = readFileSync(auditFile, 'utf8');
        return text.includes('"code":"TENANT_MISMATCH"') && text.includes('"event":"access_proxy.allowed"')
          ? text
          : null;
      },
      { what: 'access proxy decisions in the audit log' },
    );
    for (const text of [gw.output.text(), audit]) {
      for (const k of [acmeKey, otherKey]) assert.ok(!text.includes(k), 'a group key appears in the log');
      assert.ok(
        !text.includes(Buffer.from(`acme:${acmeKey}`).toString('base64')),
        'a Proxy-Authorization value appears in the log',
      );
    }
  });
});
