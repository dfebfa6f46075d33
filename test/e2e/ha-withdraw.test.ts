import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { type EndpointView, forwardOf, startGateway, type TestGateway } from '../helpers/gateway.js';
import { waitFor } from '../helpers/util.js';

async function endpoints(gw: TestGateway): Promise<EndpointView[]> {
  return (await forwardOf(gw, 'acme', 'grp/web'))?.endpoints ?? [];
}

/** An HTTP server with a health endpoint; stop() frees the port, start() takes it again. */
async function site(name: string) {
  const state = { served: 0, port: 0 };
  let server: http.Server | undefined;
  const start = async () => {
    server = http.createServer((req, res) => {
      if (req.url !== '/health') state.served++;
      res.end(req.url === '/health' ? 'ok\n' : `hello from ${name} ${req.url}\n`);
    });
    await new Promise<void>((r) => server!.listen(state.port, '127.0.0.1', () => r()));
    state.port = (server.address() as net.AddressInfo).port;
  };
  // New connections are refused from here on. node's close() also ends the connections that are
  // idle, and one accepted just before whose request has not been read yet counts as idle: a
  // health check in flight then sees a reset instead of the refusal.
  const stop = () =>
    new Promise<void>((r) => {
      server?.close(() => r());
      server?.closeIdleConnections();
    });
  await start();
  return Object.assign(state, { start, stop });
}

function get(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/x', agent: false, timeout: 10_000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolve(/^hello from (\S+)/.exec(body)?.[1] ?? body));
      })
      .on('error', reject);
  });
}

async function spread(port: number, n: number, step: string): Promise<Record<string, number>> {
  const by: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const who = await get(port).catch((e: Error) => {
      throw new Error(`${step}, request ${i + 1}: ${e.message}`);
    });
    by[who] = (by[who] ?? 0) + 1;
  }
  return by;
}

describe('health checks: a repository a connector cannot reach is withdrawn', () => {
  let gw: TestGateway;
  let a: Awaited<ReturnType<typeof site>>;
  let b: Awaited<ReturnType<typeof site>>;
  const connectors: TestConnector[] = [];

  before(async () => {
    gw = await startGateway();
    const keyFile = await gw.addTenant('acme');
    a = await site('A');
    b = await site('B');
    for (const web of [a, b]) {
      connectors.push(
        await startConnector({
          gateway: gw.sshPort,
          tenant: 'acme',
          keyFile,
          repositories: { grp: { web: `http://127.0.0.1:${web.port}` } },
          config: { health_check: { http: '/health', interval: '1s', timeout: '1s' } },
        }),
      );
    }
  });
  after(async () => {
    for (const c of connectors) await c.stop();
    await gw?.stop();
    await a?.stop();
    await b?.stop();
  });

  test('a stopped destination is withdrawn and gets no traffic; back, it is restored; all withdrawn is refused with the reason', async (t) => {
    const port = await connectors[0]!.leasePort('grp/web');
    await waitFor(async () => (await endpoints(gw)).length === 2, { what: 'two connectors' });
    const both = await spread(port, 10, 'both online');
    assert.ok(both.A! >= 3 && both.B! >= 3, `both connectors get traffic: ${JSON.stringify(both)}`);

    const stoppedAt = Date.now();
    await a.stop();
    const withdrawn = await waitFor(async () => (await endpoints(gw)).find((e) => e.state === 'withdrawn'), {
      what: 'the connector of A to withdraw',
    });
    t.diagnostic(`withdrawn ${Date.now() - stoppedAt} ms after its destination stopped (checks every 1 s)`);
    // refused, or reset when a check was in flight as it stopped (see site())
    assert.match(
      withdrawn.reason ?? '',
      new RegExp(`^health check failed: 127\\.0\\.0\\.1:${a.port}: connection (refused|reset)$`),
    );
    const listing = await gw.tether(['tenants', 'list', 'acme']);
    assert.match(
      listing.stdout,
      /withdrawn: health check failed: 127\.0\.0\.1:\d+: connection (refused|reset)/,
    );
    assert.equal((await connectors[0]!.repo('grp/web'))?.state, 'unreachable');

    const servedA = a.served;
    assert.deepEqual(await spread(port, 20, 'A withdrawn'), { B: 20 }, 'every new connection went to B');
    assert.equal(a.served, servedA);

    await a.start();
    await waitFor(async () => (await endpoints(gw)).every((e) => e.state === 'online'), {
      what: 'A restored',
    });
    const again = await spread(port, 10, 'A restored');
    assert.ok(again.A! >= 3 && again.B! >= 3, `A gets traffic again: ${JSON.stringify(again)}`);

    await Promise.all([a.stop(), b.stop()]);
    await waitFor(async () => (await endpoints(gw)).every((e) => e.state === 'withdrawn'), {
      what: 'both withdrawn',
    });
    const r = await gw.api('GET', '/v1/tenants/acme');
    const f = (r.json as { tenant: { forwards: Array<{ state: string; port: number }> } }).tenant
      .forwards[0]!;
    assert.equal(f.state, 'withdrawn');
    assert.equal(f.port, port, 'the lease stays while withdrawn');
    await assert.rejects(get(port));
    await gw.output.wait(
      /"event":"connection.refused".*"reason":"repository grp\/web of acme is unavailable \(its connectors cannot reach it\)"/,
    );
  });
});
