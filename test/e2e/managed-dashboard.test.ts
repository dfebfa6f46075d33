import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { haveApache, startApacheDav, type TestDav } from '../helpers/apache-dav.js';
import { ARTIFACTS, launchChromium, waitText } from '../helpers/browser.js';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { request, startHttpServer, type TestServer } from '../helpers/servers.js';
import { waitFor } from '../helpers/util.js';

/** The dashboard's managed repositories form, in Chromium, against a real gateway and connector. */
describe('dashboard: managed repositories (Chromium)', {
  skip: haveApache ? false : 'apache2 not installed',
}, () => {
  let gw: TestGateway;
  let browser: Browser;
  let page: Page;
  let conn: TestConnector;
  let web: TestServer;
  let dav: TestDav;
  const consoleErrors: string[] = [];

  before(async () => {
    [gw, browser, web, dav] = await Promise.all([
      startGateway(),
      launchChromium(),
      startHttpServer('intranet'),
      startApacheDav(),
    ]);
    const keyFile = await gw.addTenant('acme');
    conn = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile,
      config: { managed: { allow: [{ cidr: '127.0.0.1/32', ports: String(web.port), services: ['http'] }] } },
    });
    const context = await browser.newContext({ viewport: { width: 1360, height: 1000 } });
    page = await context.newPage();
    page.on('console', (m) => {
      // the refused POST shows up as a failed load; anything else (a CSP violation) is a fault
      if (m.type() === 'error' && !/status of 400/.test(m.text())) consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
  });

  after(async () => {
    await conn?.stop();
    await browser?.close();
    await gw?.stop();
    await web?.close();
    await dav?.stop();
  });

  test('propose through the form: allowed served, WebDAV outside the policy refused with its reason', async () => {
    await page.goto(`${gw.adminUrl}/`);
    await page.getByLabel('Admin token').fill(gw.adminToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const card = page.locator('tether-tenant[data-tenant="acme"]');
    const panel = card.locator('section.managed');
    await waitText(panel, /None proposed\./, 'an empty managed panel');

    const form = panel.getByRole('form', { name: 'Propose a managed repository to acme' });
    // a bad URI: the gateway's message, nothing stored
    await form.getByLabel('Repository').fill('web/site');
    await form.getByLabel('URI').fill('ftp://127.0.0.1');
    await form.getByRole('button', { name: 'Propose' }).click();
    await waitText(
      panel.locator('.error'),
      /invalid URI for web\/site: unknown service "ftp"/,
      'the refusal',
    );

    await form.getByLabel('URI').fill(`http://127.0.0.1:${web.port}`);
    await form.getByRole('button', { name: 'Propose' }).click();
    await waitText(
      panel.locator('tr[data-managed="web/site"] [data-field="managed-state"]'),
      /^serving$/,
      'web/site serving',
      30_000,
    );
    const lease = await conn.leasePort('web/site');
    const answer = await request(lease, { path: '/' });
    assert.equal(answer.status, 200);

    await form.getByLabel('Repository').fill('docs/dav');
    await form.getByLabel('URI').fill(`webdav+http://127.0.0.1:${dav.port}/`);
    await form.getByRole('button', { name: 'Propose' }).click();
    const reason = `127.0.0.1:${dav.port} is outside managed.allow: no rule allows the service webdav`;
    await waitText(
      panel.locator('tr[data-managed="docs/dav"] [data-field="managed-state"]'),
      new RegExp(`^refused ${reason.replace(/[.]/g, '\\.')}$`),
      'the refusal with its reason',
      30_000,
    );
    assert.deepEqual(dav.requests(), [], 'Apache saw no request');
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-managed.png'), fullPage: true });

    // remove it from the page: gone from the gateway and from the connector
    await panel.getByRole('button', { name: 'Remove web/site' }).click();
    await waitFor(async () => (await panel.locator('tr[data-managed="web/site"]').count()) === 0, {
      what: 'web/site to leave the panel',
    });
    await waitFor(async () => (await conn.repo('web/site')) === undefined, {
      what: 'the connector to drop it',
    });
    assert.deepEqual(consoleErrors, []);
  });
});
