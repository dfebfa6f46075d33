/**
 * The HTTP front door with a real upstream that echoes what it receives: caller
 * authentication (static token file made by `tether http-proxy hash-token`, group keys),
 * header sanitising, malformed requests, upstream credentials from a file and a command,
 * a tenant repository through the tunnel, the failure throttle and TLS.
 */
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { type SshForward, sshForward } from '../helpers/openssh.js';
import { type Answer, request } from '../helpers/servers.js';
import { selfSignedCert } from '../helpers/tls-certs.js';
import { BIN, run, tempDir, waitFor } from '../helpers/util.js';

interface Echo {
  method: string;
  url: string;
  headers: Array<[string, string]>;
  bodyBytes: number;
}

/** Sends raw bytes and reads one response (status line, headers, Content-Length body). */
function raw(port: number, bytes: string): Promise<{ status: number; head: string; body: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(bytes));
    let buf = '';
    const done = () => {
      const h = buf.indexOf('\r\n\r\n');
      if (h < 0) return false;
      const head = buf.slice(0, h);
      const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (buf.length < h + 4 + len) return false;
      s.destroy();
      resolve({ status: Number(head.split(' ')[1]), head, body: buf.slice(h + 4, h + 4 + len) });
      return true;
    };
    s.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      done();
    });
    s.on('end', () => {
      if (!done()) reject(new Error(`connection closed before a full response: ${JSON.stringify(buf)}`));
    });
    s.on('error', reject);
  });
}

const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
const header = (e: Echo, name: string) =>
  e.headers.filter(([k]) => k.toLowerCase() === name).map(([, v]) => v);

/** An upstream that answers with what it received (over TLS when given a certificate). */
async function startEcho(tls?: { cert: Buffer; key: Buffer }) {
  let requests = 0;
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    requests++;
    let bodyBytes = 0;
    req.on('data', (c: Buffer) => {
      bodyBytes += c.length;
    });
    req.on('end', () => {
      const pairs: Array<[string, string]> = [];
      for (let i = 0; i < req.rawHeaders.length; i += 2)
        pairs.push([req.rawHeaders[i]!, req.rawHeaders[i + 1]!]);
      const body = JSON.stringify({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: pairs,
        bodyBytes,
      } satisfies Echo);
      res.writeHead(200, { 'content-type': 'application/json', 'set-cookie': 'upstream=1' }).end(body);
    });
  };
  const server = tls ? https.createServer(tls, handler) : http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    get requests() {
      return requests;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

async function hashLine(name: string, token: string, extra: string[] = []): Promise<string> {
  const r = await run(process.execPath, [BIN, 'http-proxy', 'hash-token', name, '--cost', '1024', ...extra], {
    input: `${token}\n`,
  });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

describe('http-proxy: routes, authentication, sanitising and credential injection', () => {
  let dir: string;
  let echo: Awaited<ReturnType<typeof startEcho>>;
  let gw: TestGateway;
  let port: number;
  let tokens: string;
  let credFile: string;
  let cmdFile: string;
  let ssh: SshForward | undefined;

  before(async () => {
    dir = tempDir('tether-hp-');
    echo = await startEcho();
    tokens = join(dir, 'tokens');
    writeFileSync(
      tokens,
      `# e-mail:hash[:scopes]\n${await hashLine('alice@example.com', 'tok-alice')}\n${await hashLine('report-bot', 'tok-bot', ['--scopes', 'reports,team/*'])}\n`,
    );
    credFile = join(dir, 'upstream-token');
    writeFileSync(credFile, 'upstream-v1\n');
    cmdFile = join(dir, 'command-output');
    writeFileSync(cmdFile, 'key-1\n');
    const script = join(dir, 'print-key.sh');
    writeFileSync(script, `#!/bin/sh\nexec cat ${cmdFile}\n`);
    chmodSync(script, 0o755);
    const upstream = `http://127.0.0.1:${echo.port}`;
    const staticVerify = { type: 'static', file: tokens };
    gw = await startGateway({
      config: {
        log: { level: 'debug' },
        http_proxy: {
          listen: '127.0.0.1:0',
          max_header_bytes: 4096,
          max_failures: 1000,
          routes: [
            {
              name: 'echo',
              path_prefix: '/echo',
              to: upstream,
              auth: { type: 'basic-token', verify: staticVerify },
              upstream_auth: { type: 'bearer', token_file: credFile },
            },
            {
              name: 'files',
              path_prefix: '/files',
              strip_prefix: true,
              to: `${upstream}/base`,
              auth: { type: 'bearer', verify: staticVerify },
            },
            { name: 'ro', path_prefix: '/ro', to: upstream, auth: { type: 'none' }, read_only: true },
            {
              name: 'cmd',
              path_prefix: '/cmd',
              to: upstream,
              auth: { type: 'none' },
              upstream_auth: {
                type: 'header',
                name: 'X-Api-Key',
                command: [script],
                refresh: '300ms',
                retries: 0,
              },
            },
            {
              name: 'wiki',
              path_prefix: '/wiki',
              strip_prefix: true,
              to: 'tenant://acme/grp/web',
              auth: { type: 'group-key' },
            },
            { name: 'gone', path_prefix: '/gone', to: 'http://127.0.0.1:1', auth: { type: 'none' } },
          ],
        },
      },
    });
    port = Number((await gw.output.wait(/"http_proxy":"127\.0\.0\.1:(\d+)"/))[1]);
  });

  after(async () => {
    await ssh?.stop();
    await gw?.stop();
    await echo?.close();
  });

  test("the caller's credentials, cookies and forwarding claims are replaced; the upstream credential is injected", async () => {
    const r = await request(port, {
      path: '/echo/some/path?q=1',
      headers: {
        authorization: basic('alice@example.com', 'tok-alice'),
        'proxy-authorization': 'Basic c3B5OnNweQ==',
        cookie: 'session=caller',
        'x-forwarded-for': '6.6.6.6',
        'x-forwarded-host': 'evil.example',
        'x-forwarded-proto': 'gopher',
        forwarded: 'for=6.6.6.6',
        'x-real-ip': '6.6.6.6',
        'x-custom': 'kept',
      },
    });
    assert.equal(r.status, 200, r.body);
    const e = JSON.parse(r.body) as Echo;
    assert.equal(e.url, '/echo/some/path?q=1');
    assert.deepEqual(header(e, 'authorization'), ['Bearer upstream-v1']);
    assert.deepEqual(header(e, 'proxy-authorization'), []);
    assert.deepEqual(header(e, 'cookie'), []);
    assert.deepEqual(header(e, 'forwarded'), []);
    assert.deepEqual(header(e, 'x-real-ip'), []);
    assert.deepEqual(header(e, 'x-forwarded-for'), ['127.0.0.1']);
    assert.deepEqual(header(e, 'x-forwarded-host'), [`127.0.0.1:${port}`]);
    assert.deepEqual(header(e, 'x-forwarded-proto'), ['http']);
    assert.deepEqual(header(e, 'host'), [`127.0.0.1:${echo.port}`]);
    assert.deepEqual(header(e, 'x-custom'), ['kept']);
    assert.equal(r.headers['set-cookie']?.[0], 'upstream=1', 'the upstream answer comes back as it was');
  });

  test('a request body streams through (chunked and with Content-Length)', async () => {
    const auth = { authorization: basic('alice@example.com', 'tok-alice') };
    const sized = await request(port, {
      method: 'PUT',
      path: '/echo/up',
      headers: auth,
      body: 'x'.repeat(100_000),
    });
    assert.equal((JSON.parse(sized.body) as Echo).bodyBytes, 100_000);
    const chunked = await request(port, {
      method: 'POST',
      path: '/echo/up',
      headers: { ...auth, 'transfer-encoding': 'chunked' },
      body: 'y'.repeat(70_000),
    });
    const e = JSON.parse(chunked.body) as Echo;
    assert.equal(e.bodyBytes, 70_000);
    assert.deepEqual(header(e, 'transfer-encoding'), ['chunked']);
  });

  test('basic-token with the static file: no credentials, a wrong token and an unknown e-mail get 401', async () => {
    const none = await request(port, { path: '/echo/x' });
    assert.equal(none.status, 401);
    assert.equal(none.headers['www-authenticate'], 'Basic realm="tether"');
    assert.deepEqual(JSON.parse(none.body), {
      error: { code: 'UNAUTHORIZED', message: 'authentication required' },
    });
    for (const auth of [
      basic('alice@example.com', 'tok-wrong'),
      basic('mallory@example.com', 'tok-alice'),
      'Basic !!!',
      'Bearer tok-alice',
    ]) {
      const r = await request(port, { path: '/echo/x', headers: { authorization: auth } });
      assert.equal(r.status, 401, auth);
    }
  });

  test('the static token file is reloaded when it changes: a new token works without a restart', async () => {
    const carol = { authorization: basic('carol@example.com', 'tok-carol') };
    assert.equal((await request(port, { path: '/echo/x', headers: carol })).status, 401);
    writeFileSync(
      tokens,
      `${readFileSync(tokens, 'utf8')}${await hashLine('carol@example.com', 'tok-carol')}\n`,
    );
    await waitFor(async () => (await request(port, { path: '/echo/x', headers: carol })).status === 200, {
      timeout: 10_000,
      what: 'the new token to be accepted',
    });
    await gw.output.wait(/"event":"http_proxy.token_file.reloaded"/);
  });

  test('bearer route: the scopes in the token file limit the paths (403 outside); strip_prefix and the base path', async () => {
    const bot = { authorization: 'Bearer tok-bot' };
    const ok = await request(port, { path: '/files/reports/2026.pdf', headers: bot });
    assert.equal(ok.status, 200);
    assert.equal((JSON.parse(ok.body) as Echo).url, '/base/reports/2026.pdf');
    assert.equal((await request(port, { path: '/files/team/a/b', headers: bot })).status, 200);
    const denied = await request(port, { path: '/files/payroll/2026.pdf', headers: bot });
    assert.equal(denied.status, 403);
    assert.deepEqual(JSON.parse(denied.body), {
      error: { code: 'DENIED', message: 'the token does not give access to this path' },
    });
    // alice has no scopes: everything.
    assert.equal(
      (
        await request(port, {
          path: '/files/payroll/2026.pdf',
          headers: { authorization: 'Bearer tok-alice' },
        })
      ).status,
      200,
    );
    const wrong = await request(port, {
      path: '/files/reports/x',
      headers: { authorization: 'Bearer nope' },
    });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.headers['www-authenticate'], 'Bearer realm="tether"');
  });

  test('read-only route: GET and HEAD pass, other methods get 405 with Allow', async () => {
    assert.equal((await request(port, { path: '/ro/x' })).status, 200);
    assert.equal((await request(port, { method: 'HEAD', path: '/ro/x' })).status, 200);
    const before = echo.requests;
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const r = await request(port, { method, path: '/ro/x', body: 'data' });
      assert.equal(r.status, 405, method);
      assert.equal(r.headers.allow, 'GET, HEAD');
      assert.deepEqual(JSON.parse(r.body), {
        error: { code: 'READ_ONLY', message: 'this route is read-only: only GET, HEAD are allowed' },
      });
    }
    assert.equal(echo.requests, before, 'nothing reached the upstream');
  });

  test('no route for the path: 404; the upstream unreachable: 502', async () => {
    const r = await request(port, { path: '/nothing/here' });
    assert.equal(r.status, 404);
    assert.deepEqual(JSON.parse(r.body), {
      error: { code: 'NO_ROUTE', message: 'no route for this host and path' },
    });
    const gone = await request(port, { path: '/gone/x' });
    assert.equal(gone.status, 502);
    assert.deepEqual(JSON.parse(gone.body), {
      error: { code: 'UPSTREAM_UNREACHABLE', message: 'the upstream could not be reached' },
    });
  });

  test('malformed requests: CL+TE, duplicate Content-Length, duplicate Host, dot segments get 400; a header block over the limit 431', async () => {
    const before = echo.requests;
    const clte = await raw(
      port,
      'POST /ro/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    );
    assert.equal(clte.status, 400);
    assert.match(clte.body, /Transfer-Encoding can't be present with Content-Length/);
    const dup = await raw(
      port,
      'POST /ro/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx',
    );
    assert.equal(dup.status, 400);
    assert.match(dup.body, /Duplicate Content-Length/);
    const hosts = await raw(port, 'GET /ro/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n');
    assert.equal(hosts.status, 400);
    assert.match(hosts.body, /more than one Host header/);
    const dots = await raw(port, 'GET /ro/../echo/x HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.equal(dots.status, 400);
    assert.match(dots.body, /path segments are not allowed/);
    const big = await raw(port, `GET /ro/x HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(5000)}\r\n\r\n`);
    assert.equal(big.status, 431);
    assert.match(big.body, /request header fields too large/);
    assert.equal(echo.requests, before, 'nothing reached the upstream');
  });

  test('Expect: 100-continue: the body is asked for only after the caller is authenticated', async () => {
    const ask = (auth: string) =>
      new Promise<string>((resolve, reject) => {
        const sock = net.connect(port, '127.0.0.1', () =>
          sock.write(
            `PUT /echo/upload HTTP/1.1\r\nHost: a\r\nAuthorization: ${auth}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n`,
          ),
        );
        let got = '';
        const t = setTimeout(() => reject(new Error(`no full answer: ${JSON.stringify(got)}`)), 5_000);
        sock.on('data', (c: Buffer) => {
          got += c.toString();
          if (got.startsWith('HTTP/1.1 100 Continue\r\n\r\n') && !got.includes('hello')) {
            if (!got.includes('\r\n\r\nHTTP/1.1')) sock.write('hello');
          }
          // The end of the answer: a JSON body with Content-Length, or the last chunk.
          if (/\r\n\r\n\{.*\}$/s.test(got) || got.endsWith('\r\n0\r\n\r\n')) {
            clearTimeout(t);
            sock.destroy();
            resolve(got);
          }
        });
        sock.on('error', reject);
      });
    const ok = await ask(basic('alice@example.com', 'tok-alice'));
    assert.match(ok, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK/);
    assert.match(ok, /"bodyBytes":5/);
    assert.doesNotMatch(ok, /"expect"/i, 'Expect is answered by the front door, not passed on');
    const refused = await ask(basic('alice@example.com', 'tok-wrong'));
    assert.match(refused, /^HTTP\/1\.1 401 Unauthorized/);
  });

  test('the upstream credential file changes: the upstream sees the new value on the next request', async () => {
    const auth = { authorization: basic('alice@example.com', 'tok-alice') };
    const seen = async () =>
      header(
        JSON.parse((await request(port, { path: '/echo/x', headers: auth })).body) as Echo,
        'authorization',
      );
    assert.deepEqual(await seen(), ['Bearer upstream-v1']);
    writeFileSync(credFile, 'upstream-v2\n');
    assert.deepEqual(await seen(), ['Bearer upstream-v2']);
    rmSync(credFile);
    assert.deepEqual(await seen(), ['Bearer upstream-v2'], 'a missing file keeps the last good value');
    writeFileSync(credFile, 'upstream-v3');
    assert.deepEqual(await seen(), ['Bearer upstream-v3']);
  });

  test('a credential command is re-run on its schedule; when it fails the last good value stays', async () => {
    const seen = async () =>
      header(
        JSON.parse(
          (await request(port, { path: '/cmd/x', headers: { 'x-api-key': 'caller-copy' } })).body,
        ) as Echo,
        'x-api-key',
      );
    assert.deepEqual(await seen(), ['key-1']);
    writeFileSync(cmdFile, 'key-2\n');
    await waitFor(async () => (await seen())[0] === 'key-2', { what: 'the refreshed key', timeout: 10_000 });
    const from = gw.output.lines.length;
    rmSync(cmdFile);
    await gw.output.wait(/"event":"http_proxy.credential_command.gave_up"/, 10_000, from);
    assert.deepEqual(await seen(), ['key-2']);
    writeFileSync(cmdFile, 'key-3\n');
    await waitFor(async () => (await seen())[0] === 'key-3', {
      what: 'the key after the command recovered',
      timeout: 10_000,
    });
  });

  test('a tenant repository through the tunnel, with its group key; a rotated key stops working at once; offline is 503', async () => {
    const keyFile = await gw.addTenant('acme');
    ssh = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'acme',
      keyFile,
      forwards: [{ label: 'grp/web', port: echo.port }],
    });
    assert.ok(ssh.ports.get('grp/web'));
    const key = await gw.groupKey('acme', 'grp');
    const ok = await request(port, {
      path: '/wiki/page?id=7',
      headers: { authorization: basic('acme', key) },
    });
    assert.equal(ok.status, 200, ok.body);
    const e = JSON.parse(ok.body) as Echo;
    assert.equal(e.url, '/page?id=7');
    assert.deepEqual(header(e, 'authorization'), []);
    assert.equal(
      (await request(port, { path: '/wiki/x', headers: { authorization: `Bearer ${key}` } })).status,
      200,
    );
    assert.equal(
      (
        await request(port, {
          method: 'POST',
          path: '/wiki/x',
          headers: { authorization: basic('acme', key) },
          body: 'z'.repeat(10_000),
        })
      ).status,
      200,
    );
    assert.equal(
      (await request(port, { path: '/wiki/x', headers: { authorization: basic('acme', 'wrong-key') } }))
        .status,
      401,
    );
    assert.equal(
      (await request(port, { path: '/wiki/x', headers: { authorization: basic('other', key) } })).status,
      401,
    );

    const rotated = await gw.api('POST', '/v1/tenants/acme/groups/grp/key');
    assert.equal(rotated.status, 200);
    assert.equal(
      (await request(port, { path: '/wiki/x', headers: { authorization: basic('acme', key) } })).status,
      401,
    );
    const newKey = (rotated.json as { key: string }).key;
    assert.equal(
      (await request(port, { path: '/wiki/x', headers: { authorization: basic('acme', newKey) } })).status,
      200,
    );

    await ssh.stop();
    ssh = undefined;
    await waitFor(
      async () =>
        (await request(port, { path: '/wiki/x', headers: { authorization: basic('acme', newKey) } }))
          .status === 503,
      {
        what: 'the route to answer 503 once the connector is gone',
      },
    );
    const off = await request(port, { path: '/wiki/x', headers: { authorization: basic('acme', newKey) } });
    assert.equal((JSON.parse(off.body) as { error: { code: string } }).error.code, 'FORWARD_OFFLINE');
  });

  test('credentials never reach the log', async () => {
    const text = gw.output.text();
    for (const secret of [
      'tok-alice',
      'tok-bot',
      'tok-carol',
      'upstream-v1',
      'upstream-v2',
      'upstream-v3',
      'key-1',
      'key-2',
      'key-3',
      'c3B5OnNweQ',
    ]) {
      assert.ok(!text.includes(secret), `${secret} appears in the log`);
    }
  });
});

describe('http-proxy: failure throttle and TLS', () => {
  let gw: TestGateway;
  let echo: Awaited<ReturnType<typeof startEcho>>;
  let tlsEcho: Awaited<ReturnType<typeof startEcho>>;
  let port: number;
  let ca: Buffer;

  before(async () => {
    const dir = tempDir('tether-hp-tls-');
    echo = await startEcho();
    const tls = selfSignedCert(dir, { days: 2, san: 'DNS:localhost,IP:127.0.0.1' });
    const { certFile: cert, keyFile: key } = tls;
    ca = tls.cert;
    tlsEcho = await startEcho({ cert: ca, key: tls.key });
    const tokens = join(dir, 'tokens');
    writeFileSync(tokens, `${await hashLine('alice@example.com', 'tok-alice')}\n`);
    gw = await startGateway({
      config: {
        http_proxy: {
          listen: '127.0.0.1:0',
          tls: { cert, key },
          max_failures: 3,
          failure_window: '60s',
          routes: [
            {
              to: `http://127.0.0.1:${echo.port}`,
              auth: { type: 'basic-token', verify: { type: 'static', file: tokens } },
            },
            {
              path_prefix: '/tls',
              to: `https://127.0.0.1:${tlsEcho.port}`,
              upstream_ca: cert,
              auth: { type: 'none' },
            },
          ],
        },
      },
    });
    port = Number((await gw.output.wait(/"http_proxy":"127\.0\.0\.1:(\d+)"/))[1]);
  });

  after(async () => {
    await gw?.stop();
    await echo?.close();
    await tlsEcho?.close();
  });

  const get = (auth: string, path = '/x') =>
    new Promise<Answer>((resolve, reject) => {
      const r = https.request(
        { host: '127.0.0.1', port, path, ca, headers: { authorization: auth }, agent: false },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => {
            body += c.toString();
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        },
      );
      r.on('error', reject);
      r.end();
    });

  test('TLS: the front door speaks HTTPS with the configured certificate; X-Forwarded-Proto is https', async () => {
    const r = await get(basic('alice@example.com', 'tok-alice'));
    assert.equal(r.status, 200);
    const e = JSON.parse(r.body) as Echo;
    assert.deepEqual(header(e, 'x-forwarded-proto'), ['https']);
  });

  test('an https:// upstream is verified against upstream_ca', async () => {
    const r = await get('', '/tls/page');
    assert.equal(r.status, 200, r.body);
    assert.equal((JSON.parse(r.body) as Echo).url, '/tls/page');
  });

  test('too many wrong tokens from one address: 429 with Retry-After, even for the right token', async () => {
    for (let i = 0; i < 3; i++)
      assert.equal((await get(basic('alice@example.com', `wrong-${i}`))).status, 401);
    const blocked = await get(basic('alice@example.com', 'tok-alice'));
    assert.equal(blocked.status, 429);
    assert.ok(Number(blocked.headers['retry-after']) > 0);
    assert.deepEqual(JSON.parse(blocked.body), {
      error: {
        code: 'TOO_MANY_FAILURES',
        message: 'too many failed logins from your address; try again later',
      },
    });
  });
});
