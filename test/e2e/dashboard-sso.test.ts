// test-timeout: 240000 (two gateways, a provider and Chromium; several full sign-ins under load)
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { launchChromium, textOf, waitText } from '../helpers/browser.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startOidcProvider, type TestOidcProvider } from '../helpers/oidc-provider.js';
import { waitFor } from '../helpers/util.js';

/**
 * Dashboard single sign-on against a real OpenID Connect provider (oidc-provider), driven in
 * Chromium: the provider's own login and consent pages, the gateway's callback, the session
 * cookie, roles, sign-out, expiry, refusals and cross-site requests.
 */

const CLIENT = { client_id: 'tether-dashboard', client_secret: 'a-test-client-secret-of-some-length' };
const SHORT_LIFETIME_MS = 3_000;

function oidcConfig(issuer: string, session?: Record<string, unknown>) {
  return {
    admin: {
      oidc: {
        issuer,
        ...CLIENT,
        scopes: ['openid', 'email', 'profile', 'groups'],
        // Who may sign in at all; a role must name them too.
        allowed_groups: ['staff', 'ops-viewers', 'marketing'],
        allowed_emails: ['carol@example.com'],
        roles: {
          admin: { groups: ['ops-admins'] },
          viewer: { groups: ['ops-viewers'], emails: ['carol@example.com'] },
        },
        ...(session ? { session } : {}),
      },
    },
  };
}

/** A page on another origin of the same site (127.0.0.1, another port): SameSite lets cookies through. */
async function startAttacker(target: string): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    // text/plain forms need no CORS preflight: the classic way to post JSON-looking bodies cross-site.
    res.end(`<!doctype html><form id="f" method="POST" enctype="text/plain" action="${target}/v1/tenants">
<input name='{"id":"evil","x":"' value='"}'></form><script>document.getElementById('f').submit()</script>`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe('dashboard single sign-on (OpenID Connect) in Chromium', () => {
  let provider: TestOidcProvider;
  let gw: TestGateway;
  let shortGw: TestGateway;
  let browser: Browser;
  const contexts: BrowserContext[] = [];

  before(async () => {
    provider = await startOidcProvider([
      { id: 'alice', email: 'alice@example.com', groups: ['ops-admins', 'staff'] },
      { id: 'victor', email: 'victor@example.com', groups: ['ops-viewers'] },
      { id: 'mallory', email: 'mallory@example.com', groups: ['marketing'] },
      // Names an email the allow and viewer lists have, but the provider did not verify it.
      { id: 'carl', email: 'carol@example.com', groups: [], emailVerified: false },
      // In the admin role's group, but outside allowed_groups.
      { id: 'trent', email: 'trent@example.com', groups: ['ops-admins'] },
    ]);
    [gw, shortGw, browser] = await Promise.all([
      startGateway({ config: oidcConfig(provider.issuer) }),
      startGateway({ config: oidcConfig(provider.issuer, { lifetime: `${SHORT_LIFETIME_MS}ms` }) }),
      launchChromium(),
    ]);
    provider.start({
      ...CLIENT,
      redirect_uris: [`${gw.adminUrl}/auth/callback`, `${shortGw.adminUrl}/auth/callback`],
    });
  });

  after(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close();
    await Promise.all([gw?.stop(), shortGw?.stop()]);
    await provider?.close();
  });

  async function newPage(): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    contexts.push(context);
    // The provider's pages import a web font: nothing may leave the machine.
    await context.route(/^https:\/\//, (r) => r.abort());
    return { context, page: await context.newPage() };
  }

  /**
   * Signs in through the provider's forms; resolves when the callback has answered, with the time
   * just before the consent was submitted (the session cannot start earlier).
   */
  async function signIn(page: Page, g: TestGateway, user: string): Promise<number> {
    await page.goto(`${g.adminUrl}/`);
    await page.getByRole('link', { name: 'Sign in with single sign-on' }).click();
    await page.locator('input[name="login"]').fill(user);
    await page.locator('input[name="password"]').fill('any password');
    await page.getByRole('button', { name: 'Sign-in' }).click();
    await page.getByRole('button', { name: 'Continue' }).waitFor({ timeout: 20_000 });
    const before = Date.now();
    await page.getByRole('button', { name: 'Continue' }).click();
    // Back on the gateway: the dashboard, or the callback's own page when it refuses.
    await page.waitForURL((u) => u.href.startsWith(g.adminUrl), { timeout: 30_000, waitUntil: 'commit' });
    return before;
  }

  async function sessionCookie(context: BrowserContext, g: TestGateway) {
    const all = await context.cookies(g.adminUrl);
    return all.find((c) => c.name === 'tether_session');
  }

  /** An admin API call from Node with a session cookie (and optional headers). */
  async function withCookie(
    g: TestGateway,
    cookie: string,
    method: string,
    path: string,
    headers: Record<string, string> = {},
    body?: unknown,
  ): Promise<{
    status: number;
    json: { error?: { code: string; message: string } } & Record<string, unknown>;
  }> {
    const res = await fetch(`${g.adminUrl}${path}`, {
      method,
      headers: {
        cookie: `tether_session=${cookie}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : {} };
  }

  test('an admin signs in with the provider, sees who they are and changes something', async () => {
    const { context, page } = await newPage();
    const consoleErrors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' && page.url().startsWith(gw.adminUrl)) consoleErrors.push(m.text());
    });
    await signIn(page, gw, 'alice');
    await waitText(page.locator('.status'), /^live$/, 'event stream connected');
    assert.equal(await textOf(page.locator('.who')), 'alice@example.com admin');
    assert.equal(
      await page.evaluate('sessionStorage.getItem("tether.adminToken")'),
      null,
      'no token in the page',
    );

    const cookie = await sessionCookie(context, gw);
    assert.ok(cookie, 'a session cookie');
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Strict');
    assert.equal(cookie.secure, false, 'plain http on loopback: the only case without Secure');
    assert.equal(cookie.expires, -1, 'a browser-session cookie; the gateway decides when it ends');
    assert.equal(await page.evaluate('document.cookie'), '', 'the page script cannot read it');

    // A change through the page: add a tenant, then change its quota.
    await page.getByLabel('Tenant id').fill('acme');
    await page.getByLabel('Quota').fill('3');
    await page.getByRole('button', { name: 'Add tenant' }).click();
    await page.locator('pre.private-key').waitFor();
    await page.getByRole('button', { name: 'Done' }).click();
    const card = page.locator('tether-tenant[data-tenant="acme"]');
    await waitText(card.locator('.badge'), /^0 \/ 3 forwards$/, 'tenant card');
    await card.getByRole('button', { name: 'Change quota' }).click();
    await card.getByLabel('Forwards at once').fill('5');
    await card.getByRole('button', { name: 'Save quota' }).click();
    await waitText(card.locator('.badge'), /^0 \/ 5 forwards$/, 'quota changed');
    const r = await gw.api('GET', '/v1/tenants/acme');
    assert.equal((r.json as { tenant: { quota: number } }).tenant.quota, 5);
    await gw.output.wait(/"event":"dashboard.sign_in".*"user":"alice@example.com".*"role":"admin"/);
    await gw.output.wait(
      new RegExp(`"event":"dashboard.sso_ready".*"redirect_uri":"${gw.adminUrl}/auth/callback"`),
    );
    assert.deepEqual(
      consoleErrors,
      [],
      'the dashboard logged no error (no CSP violation, no failed request)',
    );
  });

  test('a viewer sees no change buttons and every change is refused with 403', async () => {
    const { context, page } = await newPage();
    await signIn(page, gw, 'victor');
    const card = page.locator('tether-tenant[data-tenant="acme"]');
    await card.waitFor();
    await waitText(page.locator('.who'), /victor@example\.com viewer \(read only\)/, 'role shown');
    assert.equal(await page.getByRole('button', { name: 'Add tenant' }).count(), 0);
    assert.equal(await page.locator('tether-add-tenant').count(), 0);
    for (const name of ['Change quota', 'Change limits', 'Remove'])
      assert.equal(await card.getByRole('button', { name }).count(), 0, `no ${name} button`);
    assert.deepEqual(await card.getByRole('button').allTextContents(), ['Connections'], 'reading stays');
    assert.equal(await page.getByRole('button', { name: 'Sign out' }).count(), 1, 'a viewer can sign out');

    // The API refuses a change even when sent as the page would, with the CSRF token.
    const answer = (await page.evaluate(async () => {
      const s = (await (await fetch('/auth/session')).json()) as { csrf_token: string };
      const res = await fetch('/v1/tenants/acme', {
        method: 'PATCH',
        headers: { 'content-type': 'application/json', 'x-csrf-token': s.csrf_token },
        body: JSON.stringify({ quota: 0 }),
      });
      return { status: res.status, body: await res.json() };
    })) as { status: number; body: { error: { code: string; message: string } } };
    assert.equal(answer.status, 403);
    assert.equal(answer.body.error.code, 'READ_ONLY_ROLE');
    assert.equal(
      answer.body.error.message,
      'victor@example.com has the viewer role on this dashboard: changes are refused',
    );
    const cookie = (await sessionCookie(context, gw))!.value;
    const del = await withCookie(gw, cookie, 'DELETE', '/v1/tenants/acme', {
      'sec-fetch-site': 'same-origin',
    });
    assert.equal(del.status, 403, 'refused before the role check: no CSRF token');
    const keys = await withCookie(gw, cookie, 'GET', '/v1/tenants/acme/repositories');
    assert.equal(keys.status, 403);
    assert.equal(
      keys.json.error?.message,
      'victor@example.com has the viewer role: group keys are not shown to viewers',
    );
    const read = await withCookie(gw, cookie, 'GET', '/v1/tenants/acme');
    assert.equal(read.status, 200, 'reading works');
    const r = await gw.api('GET', '/v1/tenants/acme');
    assert.equal((r.json as { tenant: { quota: number } }).tenant.quota, 5, 'the tenant is unchanged');
  });

  test('sign-out ends the session on the gateway, not only in the browser', async () => {
    const { context, page } = await newPage();
    await signIn(page, gw, 'alice');
    await waitText(page.locator('.status'), /^live$/, 'signed in');
    const cookie = (await sessionCookie(context, gw))!.value;
    assert.equal((await withCookie(gw, cookie, 'GET', '/v1/tenants')).status, 200);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('link', { name: 'Sign in with single sign-on' }).waitFor();
    assert.equal(await sessionCookie(context, gw), undefined, 'the cookie is cleared');
    const after = await withCookie(gw, cookie, 'GET', '/v1/tenants');
    assert.equal(after.status, 401, 'the old cookie value opens nothing');
    assert.equal(after.json.error?.code, 'DASHBOARD_SESSION_ENDED');
    await gw.output.wait(/"event":"dashboard.sign_out".*"user":"alice@example.com"/);
  });

  test('a session ends at its lifetime: the API refuses it and the page asks to sign in again', async (t) => {
    const { context, page } = await newPage();
    const started = await signIn(page, shortGw, 'alice');
    const signedIn = Date.now();
    const cookie = (await sessionCookie(context, shortGw))!.value;
    // Used right away, then until it is refused: the refusal must not come before the lifetime.
    const ended = await waitFor(
      async () => {
        const r = await withCookie(shortGw, cookie, 'GET', '/v1/tenants');
        if (r.status === 200) return undefined;
        assert.equal(r.status, 401);
        assert.equal(r.json.error?.code, 'DASHBOARD_SESSION_ENDED');
        return Date.now();
      },
      { timeout: SHORT_LIFETIME_MS + 20_000, interval: 100, what: 'the session to end' },
    );
    t.diagnostic(
      `lifetime ${SHORT_LIFETIME_MS} ms: refused ${ended - started} ms after the consent was sent, ${ended - signedIn} ms after the dashboard came back`,
    );
    assert.ok(ended - started >= SHORT_LIFETIME_MS, `ended ${ended - started} ms after sign-in began`);
    assert.ok(ended - signedIn < SHORT_LIFETIME_MS + 10_000, `ended ${ended - signedIn} ms after sign-in`);
    await waitText(
      page.getByRole('status'),
      /Your session has ended\. Sign in again\./,
      'ended notice',
      20_000,
    );
    await page.getByRole('link', { name: 'Sign in with single sign-on' }).waitFor();
  });

  test('users outside allowed_groups, or that no role names, are refused with a page, a log line and a counted refusal', async () => {
    for (const [user, shown, why] of [
      ['mallory', 'mallory@example.com', 'no role names this user'],
      ['carl', 'carol@example.com', 'not in allowed_groups or allowed_emails (its email is not verified)'],
      ['trent', 'trent@example.com', 'not in allowed_groups or allowed_emails'],
    ] as const) {
      const { context, page } = await newPage();
      await signIn(page, gw, user);
      await waitText(page.locator('h1'), /Access refused/, 'refusal page');
      const text = await textOf(page.locator('main'));
      assert.ok(
        text.includes(
          `The identity provider signed you in as ${shown}, but this gateway does not let that account use the dashboard (${why}).`,
        ),
        text,
      );
      assert.equal(await sessionCookie(context, gw), undefined, 'no session');
      await gw.output.wait(
        new RegExp(
          `"event":"bound.refused","reason":"sso_not_allowed".*"user":"${shown.replace('.', '\\.')}"`,
        ),
      );
    }
    const metrics = await (
      await fetch(`${gw.adminUrl}/metrics`, { headers: { authorization: `Bearer ${gw.adminToken}` } })
    ).text();
    assert.match(metrics, /tether_refused_total\{reason="sso_not_allowed"\} 3/);
  });

  test('a cross-site POST with the session cookie is refused; so is a change without the CSRF token', async () => {
    const { context, page } = await newPage();
    await signIn(page, gw, 'alice');
    await waitText(page.locator('.status'), /^live$/, 'signed in');
    const cookie = (await sessionCookie(context, gw))!.value;

    // A page on another port of 127.0.0.1 (same site: the SameSite cookie goes along) posts a form.
    const attacker = await startAttacker(gw.adminUrl);
    try {
      const evil = await context.newPage();
      await evil.goto(attacker.url);
      await evil.waitForURL(`${gw.adminUrl}/v1/tenants`);
      const body = JSON.parse((await evil.locator('body').textContent()) ?? '{}');
      assert.equal(body.error.code, 'CROSS_SITE_REFUSED');
      assert.equal(
        body.error.message,
        'refused: Sec-Fetch-Site is "same-site" (changes must come from the dashboard page)',
      );
    } finally {
      await attacker.close();
    }
    await gw.output.wait(/"event":"bound.refused","reason":"cross_site_request".*"user":"alice@example.com"/);

    const token = (
      (await page.evaluate(async () => (await fetch('/auth/session')).json())) as { csrf_token: string }
    ).csrf_token;
    const add = (headers: Record<string, string>) =>
      withCookie(gw, cookie, 'POST', '/v1/tenants', headers, { id: 'evil' });
    // Without Sec-Fetch-Site (older browsers) the Origin decides.
    const foreign = await add({ origin: 'http://evil.example', 'x-csrf-token': token });
    assert.equal(foreign.status, 403);
    assert.equal(
      foreign.json.error?.message,
      'refused: Origin "http://evil.example" is not this dashboard (changes must come from the dashboard page)',
    );
    const noOrigin = await add({ 'x-csrf-token': token });
    assert.equal(
      noOrigin.json.error?.message,
      'refused: the request has neither Sec-Fetch-Site nor Origin (changes must come from the dashboard page)',
    );
    // The right origin without the token, or with a wrong one.
    const noToken = await add({ 'sec-fetch-site': 'same-origin' });
    assert.equal(noToken.status, 403);
    assert.equal(
      noToken.json.error?.message,
      'refused: no X-CSRF-Token header (changes must come from the dashboard page)',
    );
    // A token that differs in its last character (when it already ends in "x", replacing it
    // with "x" was the right token: 1 run in 64 then created the tenant).
    const wrongToken = `${token.slice(0, -1)}${token.endsWith('x') ? 'y' : 'x'}`;
    const wrong = await add({ origin: gw.adminUrl, 'x-csrf-token': wrongToken });
    assert.equal(
      wrong.json.error?.message,
      'refused: wrong X-CSRF-Token (changes must come from the dashboard page)',
    );
    assert.equal((await gw.api('GET', '/v1/tenants/evil')).status, 404, 'nothing was created');

    // Same origin and the token: the change goes through.
    const ok = await add({ origin: gw.adminUrl, 'x-csrf-token': token });
    assert.equal(ok.status, 201);
    assert.equal((await gw.api('DELETE', '/v1/tenants/evil')).status, 204);
  });

  test('the bearer token keeps working for the CLI and automation', async () => {
    const list = await gw.tether(['tenants', 'list', '--json']);
    assert.equal(list.code, 0, list.stderr);
    const change = await gw.tether(['tenants', 'change', '4', 'acme']);
    assert.equal(change.code, 0, change.stderr);
    // A stale session cookie beside a good token does not get in the way.
    const res = await fetch(`${gw.adminUrl}/v1/tenants/acme`, {
      method: 'PATCH',
      headers: {
        authorization: `Bearer ${gw.adminToken}`,
        cookie: 'tether_session=not-a-session',
        'content-type': 'application/json',
      },
      body: JSON.stringify({ quota: 6 }),
    });
    assert.equal(res.status, 200);
    const noToken = await fetch(`${gw.adminUrl}/v1/tenants`);
    assert.equal(noToken.status, 401);
  });
});
