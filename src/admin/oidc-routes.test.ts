import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { freePort } from '../../test/helpers/util.js';
import { gatewayConfigFrom } from '../config/gateway.js';
import { systemClock } from '../core/clock.js';
import { silentLogger } from '../log/index.js';
import { ssoRouteDocs } from './oidc-openapi.js';
import { DashboardSso } from './oidc-routes.js';
import { openApiDocument } from './openapi.js';

/**
 * The sign-in routes on a real HTTP server, for what needs no working provider: an unreachable
 * provider, callbacks that were not started here, a provider's error (shown escaped), sign-out.
 * The whole flow against a real provider is in test/e2e/dashboard-sso.test.ts.
 */
describe('dashboard sign-in routes without a working provider', () => {
  let server: http.Server;
  let base: string;
  let sso: DashboardSso;

  before(async () => {
    const deadPort = await freePort(); // nothing listens there: the provider is down
    const cfg = gatewayConfigFrom(
      {
        admin: {
          oidc: {
            issuer: `http://127.0.0.1:${deadPort}`,
            client_id: 'tether',
            roles: { admin: { groups: ['ops'] } },
          },
        },
      },
      'gateway.yaml',
      {},
    );
    sso = new DashboardSso(cfg.admin.oidc!, { log: silentLogger(), clock: systemClock });
    server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      sso.routes(req, res, url).then((handled) => {
        if (!handled) res.writeHead(404).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const addr = server.address() as AddressInfo;
    sso.listening(addr);
    base = `http://127.0.0.1:${addr.port}`;
  });

  after(async () => {
    sso.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  test('the redirect URI is derived from the loopback listener', () => {
    assert.equal(sso.callbackUri(), `${base}/auth/callback`);
  });

  test('a sign-in started on another name of the host moves to the redirect URI’s origin first', async () => {
    const port = new URL(base).port;
    const res = await new Promise<http.IncomingMessage>((resolve, reject) =>
      http
        .get(
          { host: '127.0.0.1', port, path: '/auth/login?again=1', headers: { host: `localhost:${port}` } },
          resolve,
        )
        .on('error', reject),
    );
    res.resume();
    assert.equal(res.statusCode, 303);
    assert.equal(res.headers.location, `${base}/auth/login?moved=1&again=1`);
    assert.equal(res.headers['set-cookie'], undefined);
  });

  test('an unreachable provider: 502 page with the code, and the next sign-in tries again', async () => {
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${base}/auth/login`, { redirect: 'manual' });
      assert.equal(res.status, 502);
      const html = await res.text();
      assert.match(html, /The identity provider \(http:\/\/127\.0\.0\.1:\d+\) cannot be reached/);
      assert.match(html, /<code>SSO_FAILED<\/code>/);
      assert.equal(res.headers.get('set-cookie'), null, 'no pending sign-in cookie');
      assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'none'/);
    }
  });

  test('a callback nobody started here is refused with a page, not an exchange', async () => {
    const res = await fetch(`${base}/auth/callback?code=abc&state=xyz`, {
      headers: { cookie: 'tether_login=forged-value' },
    });
    assert.equal(res.status, 400);
    const html = await res.text();
    assert.match(
      html,
      /This sign-in cannot be finished: it was started too long ago, in another tab or browser, or not on this gateway\./,
    );
    assert.match(
      res.headers.get('set-cookie') ?? '',
      /^tether_login=; Path=\/; HttpOnly; SameSite=Lax; Max-Age=0$/,
    );
  });

  test('a provider error is shown escaped (no markup from the query reaches the page)', async () => {
    const q = new URLSearchParams({ error: 'access_denied', error_description: '<script>alert(1)</script>' });
    const res = await fetch(`${base}/auth/callback?${q}`);
    assert.equal(res.status, 403);
    const html = await res.text();
    assert.ok(
      html.includes(
        'The identity provider did not sign you in: access_denied (&lt;script&gt;alert(1)&lt;/script&gt;).',
      ),
      html,
    );
    assert.ok(!html.includes('<script>'));
  });

  test('who is signed in: nobody; an unknown cookie is cleared; sign-out without a session is harmless', async () => {
    const none = await fetch(`${base}/auth/session`);
    assert.deepEqual(await none.json(), { signed_in: false, ended: false, sso: { login: '/auth/login' } });
    const stale = await fetch(`${base}/auth/session`, { headers: { cookie: 'tether_session=gone' } });
    assert.deepEqual(await stale.json(), { signed_in: false, ended: true, sso: { login: '/auth/login' } });
    assert.match(
      stale.headers.get('set-cookie') ?? '',
      /^tether_session=; Path=\/; HttpOnly; SameSite=Strict; Max-Age=0$/,
    );
    const out = await fetch(`${base}/auth/logout`, { method: 'POST' });
    assert.equal(out.status, 204);
    const wrongMethod = await fetch(`${base}/auth/logout`);
    assert.equal(wrongMethod.status, 404, 'sign-out is POST only');
  });

  test('the sign-in routes make a valid OpenAPI 3.1 document', async () => {
    const doc = openApiDocument(ssoRouteDocs, '1.0.0');
    const result = await new Validator().validate(doc as unknown as Parameters<Validator['validate']>[0]);
    assert.equal(result.valid, true, JSON.stringify(result.errors, null, 2));
  });
});
