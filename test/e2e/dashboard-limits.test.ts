import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { ARTIFACTS, launchChromium, waitText } from '../helpers/browser.js';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { type SshForward, sshForward } from '../helpers/openssh.js';
import { nextEvent, waitFor } from '../helpers/util.js';

interface Limits {
  balance?: string;
  bandwidth_up: number | null;
  bandwidth_down: number | null;
  max_connections: number | null;
  traffic_limit: number | null;
  traffic_period: string | null;
}
interface Usage {
  bytes: number;
  exhausted: boolean;
  resets_at: string | null;
}
interface Tenant {
  limits: Limits;
  usage: Usage;
  forwards: Array<{
    label: string;
    port: number;
    limits?: Limits | null;
    endpoints: Array<{ source: string }>;
  }>;
}

/** An upstream answering every request with 4 KB naming itself. */
async function startUpstream(name: string): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((_req, res) => {
    const body = Buffer.alloc(4000, name);
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
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

/** One request on a new connection: "answered: N bytes", or "refused" when the connection ends first. */
function get(port: number): Promise<string> {
  return new Promise((resolve) => {
    http
      .get({ host: '127.0.0.1', port, path: '/x', agent: false, timeout: 10_000 }, (res) => {
        let n = 0;
        res.on('data', (c: Buffer) => {
          n += c.length;
        });
        res.on('end', () => resolve(`answered: ${n} bytes`));
        res.on('error', () => resolve('refused'));
      })
      .on('error', () => resolve('refused'))
      .on('timeout', function (this: http.ClientRequest) {
        this.destroy();
      });
  });
}

describe('dashboard: traffic limits and connectors of a tenant (Chromium)', () => {
  let gw: TestGateway;
  let browser: Browser;
  let page: Page;
  const upstreams: Array<Awaited<ReturnType<typeof startUpstream>>> = [];
  const connectors: SshForward[] = [];
  const realConnectors: TestConnector[] = [];
  const requests: string[] = [];
  const consoleErrors: string[] = [];

  const tenant = async (): Promise<Tenant> =>
    ((await gw.api('GET', '/v1/tenants/acme')).json as { tenant: Tenant }).tenant;

  before(async () => {
    let a: Awaited<ReturnType<typeof startUpstream>>;
    let b: Awaited<ReturnType<typeof startUpstream>>;
    [gw, a, b, browser] = await Promise.all([
      startGateway(),
      startUpstream('A'),
      startUpstream('B'),
      launchChromium(),
    ]);
    upstreams.push(a, b);
    const context = await browser.newContext({ viewport: { width: 1360, height: 1000 } });
    page = await context.newPage();
    page.on('request', (r) => requests.push(r.url()));
    page.on('console', (m) => {
      // The refused PATCHes show up as failed loads; anything else (a CSP violation) is a fault.
      if (m.type() === 'error' && !/status of 400/.test(m.text())) consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
  });

  after(async () => {
    for (const c of connectors) await c.stop();
    for (const c of realConnectors) await c.stop();
    await browser?.close();
    for (const u of upstreams) await u.close();
    await gw?.stop();
  });

  test('limits shown and changed through the form; bad values refused with the gateway’s message; a spent quota shows; both connectors listed', async () => {
    const keyFile = await gw.addTenant('acme');
    await page.goto(`${gw.adminUrl}/`);
    await page.getByLabel('Admin token').fill(gw.adminToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await waitText(page.locator('.status'), /^live$/, 'event stream connected');

    const card = page.locator('tether-tenant[data-tenant="acme"]');
    const panel = card.locator('section.limits');
    await waitText(panel.locator('[data-limit="bandwidth"] dd'), /^no cap$/, 'no bandwidth cap yet');
    await waitText(panel.locator('[data-limit="connections"] dd'), /^0 open · no cap$/, 'no connection cap');
    await waitText(panel.locator('[data-limit="traffic"] dd'), /^0 B this month · no quota$/, 'no quota');
    await waitText(panel.locator('[data-limit="balance"] dd'), /^round-robin$/, 'balance');

    // Two connectors (plain OpenSSH, same key) offer the same repository: both are listed.
    for (const u of upstreams) {
      const c = await sshForward({
        sshPort: gw.sshPort,
        tenant: 'acme',
        keyFile,
        forwards: [{ label: 'grp/web', port: u.port }],
      });
      connectors.push(c);
      assert.ok(c.ports.get('grp/web'), `forward granted: ${c.stderr.text()}`);
    }
    const lease = connectors[0]!.ports.get('grp/web')!;
    assert.equal(connectors[1]!.ports.get('grp/web'), lease, 'one lease port for both connectors');
    const sources = (await tenant()).forwards[0]!.endpoints.map((e) => e.source);
    assert.equal(sources.length, 2);
    const connectorItems = card.locator('tr[data-connectors-of="grp/web"] li[data-connector]');
    await waitFor(async () => (await connectorItems.count()) === 2, { what: 'two connectors listed' });
    await waitText(card.locator('tr[data-connectors-of="grp/web"] .caption'), /^2 connectors$/, 'caption');
    for (const source of sources) {
      await waitText(
        card.locator(`li[data-connector="${source}"]`),
        new RegExp(`^${source.replace(/\./g, '\\.')} since \\d\\d:\\d\\d:\\d\\d · 0 connections$`),
        `connector ${source}`,
      );
    }
    // A connection held open shows on the connector that took it.
    const held = net.connect(lease, '127.0.0.1');
    await nextEvent(held, 'connect');
    await waitFor(
      async () => {
        const texts = await connectorItems.allTextContents();
        return texts.filter((t) => / 1 connection$/.test(t.trim())).length === 1;
      },
      { what: 'one connector with 1 connection' },
    );
    await waitText(
      panel.locator('[data-limit="connections"] dd'),
      /^1 open · no cap$/,
      'one open connection',
    );
    held.destroy();

    // Set bandwidth, a connection cap and a traffic quota for the whole tenant.
    await card.getByRole('button', { name: 'Change limits' }).click();
    const form = card.locator('form.limits-edit');
    await form.getByLabel('Bandwidth up').fill('10MB/s');
    await form.getByLabel('Bandwidth down').fill('10MB/s');
    await form.getByLabel('Max connections').fill('50');
    await form.getByLabel('Traffic quota').fill('500GB/month');
    await form.getByRole('button', { name: 'Save limits' }).click();
    await form.waitFor({ state: 'detached' });
    let t = await tenant();
    assert.deepEqual(t.limits, {
      balance: 'round-robin',
      bandwidth_up: 10_000_000,
      bandwidth_down: 10_000_000,
      max_connections: 50,
      traffic_limit: 500_000_000_000,
      traffic_period: 'month',
    });
    await waitText(panel.locator('[data-limit="bandwidth"] dd'), /^10 MB\/s each way$/, 'bandwidth shown');
    await waitText(panel.locator('[data-limit="connections"] dd'), /^0 open of at most 50$/, 'cap shown');
    await waitText(
      panel.locator('[data-limit="traffic"] dd'),
      /^\d+ (B|kB) of 500 GB per month resets \d{4}-\d\d-01$/,
      'quota shown with its reset date',
    );

    // Bad values: the gateway's message, nothing changed.
    await card.getByRole('button', { name: 'Change limits' }).click();
    assert.equal(
      await form.getByLabel('Bandwidth up').inputValue(),
      '10 MB/s',
      'the form starts from the limits',
    );
    assert.equal(
      await form.getByLabel('Repository').isVisible(),
      false,
      'no repository field for the tenant',
    );
    await form.getByLabel('Bandwidth up').fill('10 parsecs');
    await form.getByRole('button', { name: 'Save limits' }).click();
    await waitText(
      form.getByRole('alert'),
      /^invalid request body: bandwidth_up: invalid bandwidth_up "10 parsecs": unknown unit "parsecs"; use a rate such as 10MB\/s/,
      'bad rate message',
    );
    assert.deepEqual((await tenant()).limits, t.limits, 'a bad rate changes nothing');
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-limits-form.png'), fullPage: true });
    await form.getByLabel('Bandwidth up').fill('10 MB/s');
    await form.getByLabel('Max connections').fill('-1');
    await form.getByRole('button', { name: 'Save limits' }).click();
    await waitText(
      form.getByRole('alert'),
      /^invalid request body: max_connections: invalid connection cap "-1": use a whole number from 1 to 1000000/,
      'bad connection cap message',
    );
    await form.getByLabel('Max connections').fill('50');
    await form.getByLabel('Traffic quota').fill('5GB');
    await form.getByRole('button', { name: 'Save limits' }).click();
    await waitText(
      form.getByRole('alert'),
      /traffic: invalid traffic quota "5GB": say per what period/,
      'no period',
    );
    assert.deepEqual((await tenant()).limits, t.limits, 'bad values change nothing');

    // Clear a limit: an empty field removes it, the others stay.
    await form.getByLabel('Traffic quota').fill('500GB/month');
    await form.getByLabel('Max connections').fill('');
    await form.getByRole('button', { name: 'Save limits' }).click();
    await form.waitFor({ state: 'detached' });
    t = await tenant();
    assert.equal(t.limits.max_connections, null, 'connection cap removed');
    assert.equal(t.limits.bandwidth_up, 10_000_000, 'bandwidth kept');
    assert.equal(t.limits.traffic_limit, 500_000_000_000, 'quota kept');
    await waitText(panel.locator('[data-limit="connections"] dd'), /^0 open · no cap$/, 'cap gone');

    // A repository's own limits.
    await card.getByRole('button', { name: 'Change limits' }).click();
    await form.getByLabel('Limits of').selectOption('grp/web');
    assert.equal(await form.getByLabel('Bandwidth up').inputValue(), '', 'no repository limits yet');
    assert.equal(await form.getByLabel('Balance').isVisible(), false, 'balance is per tenant');
    await form.getByLabel('Bandwidth down').fill('2MB/s');
    await form.getByLabel('Max connections').fill('5');
    await form.getByRole('button', { name: 'Save limits' }).click();
    await form.waitFor({ state: 'detached' });
    t = await tenant();
    assert.deepEqual(t.forwards.find((f) => f.label === 'grp/web')?.limits, {
      bandwidth_up: null,
      bandwidth_down: 2_000_000,
      max_connections: 5,
      traffic_limit: null,
      traffic_period: null,
    });
    assert.equal(t.limits.bandwidth_down, 10_000_000, 'the tenant’s own limits unchanged');
    await waitText(
      panel.locator('li[data-repo-limits="grp/web"]'),
      /^grp\/web bandwidth up no cap · down 2 MB\/s · at most 5 connections$/,
      'repository limits listed',
    );

    // A repository not forwarded yet: named by hand; a bad label gets the gateway's message.
    await card.getByRole('button', { name: 'Change limits' }).click();
    await form.getByLabel('Limits of').selectOption({ label: 'another repository…' });
    await form.getByLabel('Max connections').fill('3');
    await form.getByLabel('Repository').fill('not a label');
    await form.getByRole('button', { name: 'Save limits' }).click();
    await waitText(
      form.getByRole('alert'),
      /^invalid request body: repository: use the repository label <group>\/<repo>$/,
      'bad repository label',
    );
    await form.getByLabel('Repository').fill('grp/api');
    await form.getByRole('button', { name: 'Save limits' }).click();
    await form.waitFor({ state: 'detached' });
    await waitText(
      card.getByRole('status').filter({ hasText: 'grp/api' }),
      /^Limits of grp\/api saved; they show here once a connector forwards it\.$/,
      'saved for later',
    );

    // A tiny quota, spent through the lease: the card shows it exhausted.
    await card.getByRole('button', { name: 'Change limits' }).click();
    await form.getByLabel('Traffic quota').fill('1KB/month');
    await form.getByRole('button', { name: 'Save limits' }).click();
    await form.waitFor({ state: 'detached' });
    assert.equal((await tenant()).limits.traffic_limit, 1000);
    assert.equal(await get(lease), 'answered: 4000 bytes');
    await waitText(card.locator('[data-field="exhausted"]'), /^traffic quota exhausted$/, 'exhausted badge');
    const note = await waitText(
      panel.locator('[data-field="traffic-exhausted"]'),
      /^Traffic quota exhausted\. [\d.]+ kB used of 1 kB per month: new connections are refused until \d{4}-\d\d-01\.$/,
      'exhausted note',
    );
    assert.equal(await card.getAttribute('data-exhausted'), 'tenant');
    assert.equal(await panel.locator('.meter.spent').count(), 1, 'the meter turns red');
    const usage = (await tenant()).usage;
    assert.equal(usage.exhausted, true);
    assert.ok(usage.bytes >= 4000, `usage counted: ${usage.bytes}`);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-limits.png'), fullPage: true });

    // A new connection is refused, as the note says.
    assert.equal(await get(lease), 'refused', note);

    // Nothing came from anywhere but the gateway, and the page logged no error (CSP included).
    assert.deepEqual(
      requests.filter((u) => !u.startsWith(`${gw.adminUrl}/`)),
      [],
    );
    assert.deepEqual(consoleErrors, []);
  });

  test('a connector that withdraws a repository shows why', async () => {
    const keyFile = await gw.addTenant('beta');
    const card = page.locator('tether-tenant[data-tenant="beta"]');
    await card.waitFor();
    const healthy = await startUpstream('H');
    upstreams.push(healthy);
    const gone = await startUpstream('G');
    const gonePort = gone.port;
    for (const port of [healthy.port, gonePort]) {
      realConnectors.push(
        await startConnector({
          gateway: gw.sshPort,
          tenant: 'beta',
          keyFile,
          repositories: { grp: { api: `http://127.0.0.1:${port}` } },
          config: { health_check: { tcp: true, interval: '1s', timeout: '1s' } },
        }),
      );
    }
    const items = card.locator('tr[data-connectors-of="grp/api"] li[data-connector]');
    await waitFor(async () => (await items.count()) === 2, { what: 'two real connectors listed' });
    await gone.close();
    const withdrawn = card.locator('tr[data-connectors-of="grp/api"] li[data-state="withdrawn"]');
    const text = await waitText(
      withdrawn,
      new RegExp(
        `^127\\.0\\.0\\.1:\\d+ → 127\\.0\\.0\\.1:${gonePort} since \\d\\d:\\d\\d:\\d\\d · 0 connections withdrawn health check failed: 127\\.0\\.0\\.1:${gonePort}: connection refused$`,
      ),
      'the withdrawn connector with its reason',
      15_000,
    );
    assert.equal(await items.locator('[data-field="reason"]').count(), 1, `one withdrawn: ${text}`);
    await waitText(
      card.locator('tr[data-forward="grp/api"] .state'),
      /^online$/,
      'the repository stays online',
    );
    await card.screenshot({ path: join(ARTIFACTS, 'dashboard-connectors.png') });
  });
});
