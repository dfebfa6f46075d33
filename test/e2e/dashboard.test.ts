import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { ARTIFACTS, launchChromium, textOf, waitText } from '../helpers/browser.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { type SshForward, sshForward } from '../helpers/openssh.js';
import { tempDir, waitFor } from '../helpers/util.js';

/** An upstream with a fast page and a slow stream (to see throughput while it flows). */
async function startUpstream(): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    if (req.url === '/stream') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024, 'x');
      let n = 0;
      const timer = setInterval(() => {
        res.write(chunk);
        if (++n === 50) {
          clearInterval(timer);
          res.end();
        }
      }, 60);
      res.on('close', () => clearInterval(timer));
      return;
    }
    const body = Buffer.alloc(256 * 1024, 'y');
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe('web dashboard in a real browser (Chromium)', () => {
  let gw: TestGateway;
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let ssh: SshForward | undefined;
  const requests: string[] = [];

  before(async () => {
    [gw, upstream, browser] = await Promise.all([startGateway(), startUpstream(), launchChromium()]);
    context = await browser.newContext({
      viewport: { width: 1360, height: 900 },
      permissions: ['clipboard-read', 'clipboard-write'],
    });
    page = await context.newPage();
    page.on('request', (r) => requests.push(r.url()));
  });

  after(async () => {
    await ssh?.stop();
    await browser?.close();
    await upstream?.close();
    await gw?.stop();
  });

  test('sign in, add a tenant, watch its forward and traffic live, change its quota, remove it', async () => {
    const keyDir = tempDir('tether-dash-');
    await page.goto(`${gw.adminUrl}/`);

    // Sign in: a wrong token is refused with a message, the right one opens the dashboard.
    await page.getByLabel('Admin token').fill('not-the-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await waitText(
      page.getByRole('alert'),
      /That token is not valid for this gateway\./,
      'wrong-token message',
    );
    await page.getByLabel('Admin token').fill(gw.adminToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await waitText(page.locator('.status'), /^live$/, 'event stream connected');
    assert.equal(await page.evaluate('sessionStorage.getItem("tether.adminToken")'), gw.adminToken);

    // Add a tenant: a bad id gets the gateway's message; a good one shows its private key once.
    await page.getByLabel('Tenant id').fill('Not Valid!');
    await page.getByRole('button', { name: 'Add tenant' }).click();
    await waitText(
      page.locator('tether-add-tenant .error'),
      /id: use 1-63 characters/,
      'bad tenant id message',
    );
    await page.getByLabel('Tenant id').fill('acme');
    await page.getByLabel('Quota').fill('3');
    await page.getByRole('button', { name: 'Add tenant' }).click();
    const keyText = await waitFor(
      async () => {
        const t = (await page.locator('pre.private-key').count())
          ? await page.locator('pre.private-key').textContent()
          : '';
        return t?.includes('BEGIN OPENSSH PRIVATE KEY') ? t : undefined;
      },
      { what: 'private key shown' },
    );
    await page.getByRole('button', { name: 'Copy private key' }).click();
    await waitText(page.locator('.copied'), /Copied\./, 'copy confirmation');
    assert.equal(await page.evaluate('navigator.clipboard.readText()'), keyText);
    const keyFile = join(keyDir, 'acme.key');
    writeFileSync(keyFile, keyText.endsWith('\n') ? keyText : `${keyText}\n`, { mode: 0o600 });
    await page.getByRole('button', { name: 'Done' }).click();
    assert.equal(await page.locator('pre.private-key').count(), 0, 'the key is gone once dismissed');

    const card = page.locator('tether-tenant[data-tenant="acme"]');
    await waitText(card.locator('.badge'), /^0 \/ 3 forwards$/, 'tenant card with its quota');
    await waitText(card, /No forwards yet/, 'no forwards yet');

    // A connector (plain OpenSSH, with the key from the page) starts: the forward appears live.
    ssh = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'acme',
      keyFile,
      forwards: [{ label: 'grp/web', port: upstream.port }],
    });
    const lease = ssh.ports.get('grp/web');
    assert.ok(lease, `forward granted: ${ssh.stderr.text()}`);
    const row = card.locator('tr[data-forward="grp/web"]');
    await waitText(row.locator('.state'), /^online$/, 'forward row online');
    assert.equal(await textOf(row.locator('[data-field="port"]')), String(lease), 'its lease port');
    await waitText(card.locator('.badge'), /^1 \/ 3 forwards$/, 'usage 1 of 3');
    await waitText(
      card.locator('.sessions'),
      /127\.0\.0\.1:\d+ ssh · key SHA256:.* · connected \d\d:\d\d:\d\d/,
      'live session listed',
    );
    await waitText(page.locator('[data-tile="forwards"] .tile-value'), /^1$/, 'forwards-online tile');

    // Source-address allowlists are shown (read only) as soon as they change.
    const lists = await gw.api('PATCH', '/v1/tenants/acme', {
      allow_from: ['127.0.0.0/8', '::1'],
      tunnel_from: ['127.0.0.1'],
    });
    assert.equal(lists.status, 200);
    await waitText(
      card.locator('[data-field="allow-from"]'),
      /Callers only from: 127\.0\.0\.0\/8, ::1\/128/,
      'allow_from shown',
    );
    await waitText(
      card.locator('[data-field="tunnel-from"]'),
      /Connectors only from: 127\.0\.0\.1\/32/,
      'tunnel_from shown',
    );

    // Traffic through the lease port: bytes per forward, throughput while a stream flows.
    for (let i = 0; i < 4; i++) {
      const r = await fetch(`http://127.0.0.1:${lease}/page`);
      assert.equal((await r.arrayBuffer()).byteLength, 256 * 1024);
    }
    await waitText(
      row.locator('[data-field="bytes_out"]'),
      /^1\.05 MB$/, // decimal units, as the CLI writes them: 1,048,576 B
      'bytes back to callers (4 × 256 KiB)',
    );
    const stream = fetch(`http://127.0.0.1:${lease}/stream`).then((r) => r.arrayBuffer());
    await waitText(row.locator('[data-field="connections"]'), /^1$/, 'one open connection');
    await waitText(page.locator('[data-tile="connections"] .tile-value'), /^1$/, 'connections tile');
    await waitText(card.locator('.rate'), /↑ [\d.]+ (kB|MB)\/s/, 'live throughput back to callers');
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });
    assert.equal((await stream).byteLength, 50 * 64 * 1024);
    await waitText(row.locator('[data-field="connections"]'), /^0$/, 'connection closed');
    await waitText(
      page.locator('tether-activity li[data-event="connection.closed"]'),
      /acme · grp\/web/,
      'activity feed',
    );

    // Connections: the tenant's connection records (written in batches), newest first.
    await card.getByRole('button', { name: 'Connections' }).click();
    const records = card.getByRole('region', { name: 'Connection records' });
    await waitFor(
      async () => {
        if ((await records.locator('tr[data-outcome="closed"]').count()) > 0) return true;
        await records.getByRole('button', { name: 'Refresh' }).click();
        return false;
      },
      { what: 'connection records in the panel', timeout: 20_000, interval: 300 },
    );
    const first = records.locator('tr[data-outcome="closed"]').first();
    assert.match((await first.textContent()) ?? '', /raw port\s*grp\/web\s*127\.0\.0\.1:\d+/);
    assert.match((await first.locator('[data-field="source"]').textContent()) ?? '', /^127\.0\.0\.1:\d+$/);
    await card.getByRole('button', { name: 'Connections' }).click();
    assert.equal(await records.count(), 0, 'the panel closes');

    // Change the quota: a bad value gets the gateway's message, a good one is applied.
    await card.getByRole('button', { name: 'Change quota' }).click();
    const quota = card.getByLabel('Forwards at once');
    await quota.fill('-1');
    await card.getByRole('button', { name: 'Save quota' }).click();
    await waitText(
      card.locator('.quota-form .error'),
      /quota: must be a whole number from 0 to 3000/,
      'bad quota',
    );
    await quota.fill('5');
    await card.getByRole('button', { name: 'Save quota' }).click();
    await waitText(card.locator('.badge'), /^1 \/ 5 forwards$/, 'new quota shown');
    const t = await gw.api('GET', '/v1/tenants/acme');
    assert.equal((t.json as { tenant: { quota: number } }).tenant.quota, 5);

    // Remove it: Cancel keeps it; confirming removes it and ends its session.
    await card.getByRole('button', { name: 'Remove' }).click();
    const dialog = page.getByRole('dialog', { name: 'Remove tenant acme' });
    await dialog.waitFor();
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-remove.png') });
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await dialog.waitFor({ state: 'detached' });
    assert.equal((await gw.api('GET', '/v1/tenants/acme')).status, 200);
    await card.getByRole('button', { name: 'Remove' }).click();
    await dialog.getByRole('button', { name: 'Remove acme' }).click();
    await card.waitFor({ state: 'detached' });
    assert.equal((await gw.api('GET', '/v1/tenants/acme')).status, 404);
    await waitFor(() => ssh!.process.exitCode !== null || ssh!.process.signalCode !== null, {
      what: 'the connector session ended',
    });
    await waitText(page.locator('.empty'), /No tenants yet/, 'empty list');

    // The gateway restarts: the page signs in to the event stream again by itself.
    await gw.restart();
    await waitText(page.locator('.status'), /^live$/, 'event stream back after a restart', 20_000);
    assert.equal((await gw.api('POST', '/v1/tenants', { id: 'after-restart' })).status, 201);
    await page.locator('tether-tenant[data-tenant="after-restart"]').waitFor({ timeout: 10_000 });

    // Nothing was fetched from anywhere but the gateway.
    const foreign = requests.filter((u) => !u.startsWith(`${gw.adminUrl}/`));
    assert.deepEqual(foreign, []);
  });

  test('the event stream needs the sign-in cookie; the page needs no token', async () => {
    const page2 = await fetch(`${gw.adminUrl}/`);
    assert.equal(page2.status, 200);
    assert.match(page2.headers.get('content-security-policy') ?? '', /default-src 'none'/);
    const es = await fetch(`${gw.adminUrl}/v1/events`);
    assert.equal(es.status, 401);
    assert.match(
      ((await es.json()) as { error: { message: string } }).error.message,
      /sign in to the dashboard first/,
    );
    const bad = await fetch(`${gw.adminUrl}/v1/events/session`, {
      method: 'POST',
      headers: { authorization: 'Bearer nope' },
    });
    assert.equal(bad.status, 401);
    const forged = await fetch(`${gw.adminUrl}/v1/events`, { headers: { cookie: 'tether_events=forged' } });
    assert.equal(forged.status, 401);
    await forged.body?.cancel();
  });
});
