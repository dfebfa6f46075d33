import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { PasswordClient, proxyPort, startSshd, type TestSshd } from '../helpers/sshd.js';

// The `oauth` realm: the password is a one-time authorization code, exchanged at a token URL;
// an access check URL, asked with the bearer token, allows or denies and may carry the route.
// Both are served by a small HTTP server written here, which counts its calls.

const CLIENT_ID = 'tether-ssh-proxy';
const CLIENT_SECRET = 'client-secret-1';

interface IdP {
  port: number;
  tokenCalls: number;
  accessCalls: number;
  /** Problems the server saw in the proxy's requests (wrong client auth, grant type, …). */
  problems: string[];
  close(): Promise<void>;
}

async function startIdP(route: () => Record<string, unknown>): Promise<IdP> {
  const used = new Set<string>();
  const sockets = new Set<Socket>();
  const state = { tokenCalls: 0, accessCalls: 0, problems: [] as string[] };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => {
      const json = (status: number, value: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      const url = new URL(req.url ?? '/', 'http://idp');
      if (req.method === 'POST' && url.pathname === '/oauth/token') {
        state.tokenCalls++;
        const form = new URLSearchParams(body);
        const basic = `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`;
        if (req.headers.authorization !== basic) state.problems.push('client authentication');
        if (form.get('grant_type') !== 'authorization_code')
          state.problems.push(`grant_type ${form.get('grant_type')}`);
        const code = form.get('code') ?? '';
        if (code.startsWith('slow-')) return; // never answers
        if (code.startsWith('boom-')) return json(500, { error: 'server_error' });
        if (used.has(code) || !/^(good|deny)-/.test(code)) return json(400, { error: 'invalid_grant' });
        used.add(code);
        return json(200, {
          access_token: code.startsWith('deny-') ? 'token-of-mallory' : 'token-of-alice',
          token_type: 'bearer',
        });
      }
      const m = /^\/access\/([^/]+)\/(\d+)$/.exec(url.pathname);
      if (req.method === 'GET' && m) {
        state.accessCalls++;
        const [target, index] = [decodeURIComponent(m[1]!), Number(m[2])];
        if (req.headers.authorization === 'Bearer token-of-mallory') return json(403, { error: 'forbidden' });
        if (req.headers.authorization !== 'Bearer token-of-alice')
          return json(401, { error: 'unauthorized' });
        if (target === 'slow-app') return;
        if (target === 'app-2') return json(200, { allow: false, reason: 'alice may not ssh into app-2' });
        if (target === 'not-json') {
          res.writeHead(200);
          return res.end('yes');
        }
        if (target === 'app-fallback') return json(200, { allow: true, user: 'alice' });
        if (target === 'app-1' && index === 0)
          return json(200, { allow: true, user: 'alice', route: route() });
        return json(404, { error: 'no such app' });
      }
      json(404, {});
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return Object.assign(state, {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  });
}

const disconnect = (code: number, text: RegExp) =>
  new RegExp(`Received disconnect from 127\\.0\\.0\\.1 port \\d+:${code}: tether: ${text.source}`);

describe('ssh proxy: oauth realm', () => {
  let sshd: TestSshd;
  let idp: IdP;
  let gw: TestGateway;
  let client: PasswordClient;
  let n = 0;
  const code = (kind: string) => `${kind}-${++n}-${Date.now()}`;

  before(async () => {
    sshd = await startSshd();
    idp = await startIdP(() => ({
      host: '127.0.0.1',
      port: sshd.port,
      user: sshd.user,
      private_key: sshd.clientKey,
      host_fingerprint: sshd.fingerprint,
    }));
    const base = `http://127.0.0.1:${idp.port}`;
    gw = await startGateway({
      config: {
        ssh_proxy: {
          listen: '127.0.0.1:0',
          login_throttle: { max_failures: 1000 },
          realms: {
            cf: {
              type: 'oauth',
              token_url: `${base}/oauth/token`,
              client_id: CLIENT_ID,
              client_secret: CLIENT_SECRET,
              access_check_url: `${base}/access/{target}/{index}`,
              timeout: '1s',
              targets: {
                'app-fallback': [
                  {
                    host: '127.0.0.1',
                    port: sshd.port,
                    user: sshd.user,
                    private_key_file: sshd.clientKeyFile,
                    host_fingerprint: sshd.fingerprint,
                  },
                ],
              },
            },
          },
        },
      },
    });
    client = new PasswordClient(await proxyPort(gw));
  });

  after(async () => {
    await gw?.stop();
    await idp?.close();
    await sshd?.stop();
  });

  const calls = () => ({ token: idp.tokenCalls, access: idp.accessCalls });

  test('a one-time code logs in; the access check carries the route', async () => {
    const was = calls();
    const r = await client.ssh('cf:app-1/0', code('good'), ['127.0.0.1', 'echo via-oauth; exit 4']);
    assert.equal(r.code, 4, r.stderr);
    assert.equal(r.stdout.trim(), 'via-oauth');
    assert.deepEqual(calls(), { token: was.token + 1, access: was.access + 1 });
    assert.deepEqual(idp.problems, []);
    await gw.output.wait(/"event":"ssh_proxy.login.succeeded".*"realm":"cf".*"principal":"alice"/);
  });

  test('without a route in the answer, the realm’s configured target is used', async () => {
    const r = await client.ssh('cf:app-fallback/0', code('good'), ['127.0.0.1', 'echo fallback-route']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'fallback-route');
  });

  test('a used code is not accepted (and may be retried with a new one)', async () => {
    const c = code('good');
    assert.equal((await client.ssh('cf:app-1/0', c, ['127.0.0.1', 'true'])).code, 0);
    const r = await client.ssh('cf:app-1/0', c, ['127.0.0.1', 'true']);
    assert.equal(r.code, 255);
    assert.match(
      r.stderr,
      /tether: the authorization code was not accepted \(a code works once and expires quickly; get a new one\); try again/,
    );
    assert.match(
      r.stderr,
      disconnect(14, /the authorization code was not accepted .*\(3 failed attempts; closing\)/),
    );
  });

  test('the token exchange failing ends the login with the reason; no access check is made', async () => {
    const was = calls();
    const r = await client.ssh('cf:app-1/0', code('boom'), ['127.0.0.1', 'true']);
    assert.equal(r.code, 255);
    assert.match(
      r.stderr,
      disconnect(
        14,
        /could not check the authorization code: the token endpoint answered 500; try again later/,
      ),
    );
    assert.deepEqual(calls(), { token: was.token + 1, access: was.access });
  });

  test('the token exchange timing out', async () => {
    const was = calls();
    const r = await client.ssh('cf:app-1/0', code('slow'), ['127.0.0.1', 'true']);
    assert.equal(r.code, 255);
    assert.match(
      r.stderr,
      disconnect(
        14,
        /could not check the authorization code: the token endpoint did not answer within 1 s; try again later/,
      ),
    );
    assert.deepEqual(calls(), { token: was.token + 1, access: was.access });
  });

  test('the access check denying: non-2xx, "allow": false with a reason, a timeout, an answer that is not JSON', async () => {
    const cases: Array<[string, string, RegExp]> = [
      ['cf:app-1/0', code('deny'), /access to cf:app-1\/0 denied \(not allowed\)/],
      ['cf:app-2/0', code('good'), /access to cf:app-2\/0 denied: alice may not ssh into app-2/],
      ['cf:app-1/7', code('good'), /access to cf:app-1\/7 denied \(no such target\)/],
      [
        'cf:slow-app/0',
        code('good'),
        /access to cf:slow-app\/0 denied: the access check did not answer within 1 s/,
      ],
      [
        'cf:not-json/0',
        code('good'),
        /access to cf:not-json\/0 denied \(the access check gave no usable answer\)/,
      ],
    ];
    for (const [user, secret, reason] of cases) {
      const was = calls();
      const r = await client.ssh(user, secret, ['127.0.0.1', 'true']);
      assert.equal(r.code, 255, user);
      assert.match(r.stderr, disconnect(14, reason), user);
      assert.deepEqual(calls(), { token: was.token + 1, access: was.access + 1 }, user);
    }
  });

  test('a malformed username makes no request to the token or access check URLs', async () => {
    const was = calls();
    const prompts = client.prompts();
    for (const user of [
      'cf:app-1',
      'cf:app-1/x',
      'cf/app-1/0',
      'cf:app-1/-3',
      'cf:app-1/0/0',
      'cf:app-1/99999',
      'cf:äpp/0',
      'nope:app-1/0',
    ]) {
      const r = await client.ssh(user, code('good'), ['127.0.0.1', 'true']);
      assert.equal(r.code, 255, user);
      assert.match(r.stderr, disconnect(15, /(invalid username|unknown realm)/), user);
    }
    assert.deepEqual(calls(), was);
    assert.equal(client.prompts(), prompts);
  });
});
