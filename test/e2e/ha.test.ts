import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { forwardOf, startGateway, type TestGateway } from '../helpers/gateway.js';
import { startHttpServer, type TestServer } from '../helpers/servers.js';
import { waitFor } from '../helpers/util.js';

const forward = (gw: TestGateway, label: string) => forwardOf(gw, 'acme', label);

/** One HTTP request on a new connection to the lease port: which server answered. */
function get(port: number, timeout = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/who', agent: false, timeout }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => {
        const m = /^hello from (\S+) /.exec(body);
        if (m) resolve(m[1]!);
        else reject(new Error(`unexpected answer ${JSON.stringify(body)}`));
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

interface Attempt {
  started: number;
  ended: number;
  server?: string;
  error?: string;
}

/** New connections, `parallel` at a time, until stopped: what became of each. */
function stream(port: number, parallel = 2): { attempts: Attempt[]; stop(): Promise<void> } {
  const attempts: Attempt[] = [];
  let running = true;
  const loop = async () => {
    while (running) {
      const a: Attempt = { started: Date.now(), ended: 0 };
      attempts.push(a);
      try {
        a.server = await get(port);
      } catch (e) {
        a.error = (e as Error).message;
      }
      a.ended = Date.now();
    }
  };
  const loops = Array.from({ length: parallel }, loop);
  return {
    attempts,
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

function summary(attempts: Attempt[]): string {
  const by = new Map<string, number>();
  for (const a of attempts)
    by.set(a.server ?? `error: ${a.error}`, (by.get(a.server ?? `error: ${a.error}`) ?? 0) + 1);
  return JSON.stringify(Object.fromEntries(by));
}

describe('connector high availability: two real connectors for one repository', () => {
  let gw: TestGateway;
  let keyFile: string;
  let webA: TestServer;
  let webB: TestServer;
  const connectors: TestConnector[] = [];
  let port: number;

  const connector = async (web: TestServer) => {
    const c = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile,
      repositories: { grp: { web: `http://127.0.0.1:${web.port}` } },
      config: { keepalive_interval: '1s' },
    });
    connectors.push(c);
    return c;
  };

  before(async () => {
    gw = await startGateway({
      config: {
        tunnel: { keepalive_interval: '1s', keepalive_count_max: 3 },
        // under TETHER_TEST_WORKERS the two connectors land on two workers: strict alternation
        // then needs the primary taking turns (with `os` the kernel picks the worker)
        worker_accept: 'primary',
      },
    });
    keyFile = await gw.addTenant('acme');
    webA = await startHttpServer('A');
    webB = await startHttpServer('B');
  });
  after(async () => {
    for (const c of connectors) {
      if (c.process.signalCode === 'SIGSTOP' || c.process.exitCode === null) c.process.kill('SIGCONT');
      await c.stop();
    }
    await gw?.stop();
    await webA?.close();
    await webB?.close();
  });

  test('both keep the same lease, the quota counts the repository once, new connections alternate', async () => {
    const a = await connector(webA);
    const b = await connector(webB);
    port = await a.leasePort('grp/web');
    assert.equal(await b.leasePort('grp/web'), port, 'one lease for both connectors');
    const f = await waitFor(async () => {
      const x = await forward(gw, 'grp/web');
      return x?.connectors === 2 ? x : null;
    });
    assert.equal(f.state, 'online');
    assert.equal(f.endpoints.length, 2);
    assert.ok(f.endpoints.every((e) => e.state === 'online' && /^127\.0\.0\.1:\d+$/.test(e.source)));
    const t = (await gw.api('GET', '/v1/tenants/acme')).json as { tenant: { in_use: number } };
    assert.equal(t.tenant.in_use, 1, 'the quota counts repositories, not connectors');

    const served = { A: 0, B: 0 } as Record<string, number>;
    for (let i = 0; i < 40; i++) served[await get(port)]!++;
    assert.deepEqual(served, { A: 20, B: 20 }, 'round robin alternates');

    const list = await gw.tether(['tenants', 'list']);
    assert.match(list.stdout, /FORWARD\s+CONNECTOR\s+CONNECTED SINCE\s+CONNECTIONS\s+STATE/);
    assert.equal(
      list.stdout.match(/acme\s+grp\/web\s+127\.0\.0\.1:\d+\s+\d{4}-\d\d-\d\d \S+\s+0\s+online/g)?.length,
      2,
    );
  });

  test('kill -9 of one connector during a stream of new connections: none fails after detection, the lease stays', async (t) => {
    const victim = connectors[0]!;
    const from = gw.output.lines.length;
    const s = stream(port);
    await waitFor(() => s.attempts.filter((a) => a.server === 'A').length >= 5, { what: 'traffic on both' });
    const killedAt = Date.now();
    victim.process.kill('SIGKILL');
    await gw.output.wait(/"event":"session.closed"/, 10_000, from);
    const detectedAt = Date.now();
    await new Promise((r) => setTimeout(r, 3000));
    await s.stop();
    const detection = detectedAt - killedAt;
    const before = s.attempts.filter((a) => a.started < killedAt);
    const window = s.attempts.filter((a) => a.started >= killedAt && a.started < detectedAt);
    const afterDetection = s.attempts.filter((a) => a.started >= detectedAt);
    t.diagnostic(`detection after kill -9: ${detection} ms`);
    t.diagnostic(
      `before the kill: ${summary(before)}; until detected: ${summary(window)}; after: ${summary(afterDetection)}`,
    );
    assert.ok(afterDetection.length >= 20, `only ${afterDetection.length} connections after detection`);
    assert.deepEqual(
      afterDetection.filter((a) => a.server !== 'B'),
      [],
      'every new connection after detection reached the other connector',
    );
    const f = await forward(gw, 'grp/web');
    assert.equal(f?.port, port, 'the lease port stayed');
    assert.equal(f?.state, 'online');
    assert.equal(f?.connectors, 1);
  });

  test('a frozen connector (a lost host) is found by keepalive; its share moves to the other without a failed new connection', async (t) => {
    const frozen = await connector(webA);
    await waitFor(async () => (await forward(gw, 'grp/web'))?.connectors === 2, {
      what: 'two connectors again',
    });
    const from = gw.output.lines.length;
    const s = stream(port);
    await waitFor(() => s.attempts.filter((a) => a.server === 'A').length >= 5, { what: 'traffic on both' });
    const frozenAt = Date.now();
    frozen.process.kill('SIGSTOP');
    await gw.output.wait(/"event":"session.closed"/, 15_000, from);
    const detectedAt = Date.now();
    await new Promise((r) => setTimeout(r, 2000));
    await s.stop();
    const window = s.attempts.filter((a) => a.started >= frozenAt && a.started < detectedAt);
    const afterDetection = s.attempts.filter((a) => a.started >= detectedAt);
    t.diagnostic(`detection of a frozen connector (keepalive 1 s x 3): ${detectedAt - frozenAt} ms`);
    t.diagnostic(`until detected: ${summary(window)}; after: ${summary(afterDetection)}`);
    const slowest = Math.max(...window.filter((a) => a.server).map((a) => a.ended - a.started), 0);
    t.diagnostic(`slowest successful connection opened while frozen: ${slowest} ms`);
    assert.ok(detectedAt - frozenAt < 8000, 'found within keepalive interval x count (+ slack)');
    assert.ok(afterDetection.length >= 10);
    assert.deepEqual(
      afterDetection.filter((a) => a.server !== 'B'),
      [],
    );
    // Connections opened while it was frozen waited for the detection, then went to the other.
    const lost = window.filter((a) => a.error && a.started > frozenAt + 200);
    assert.deepEqual(lost, [], 'no new connection opened after the freeze was lost');
    assert.equal((await forward(gw, 'grp/web'))?.port, port);
  });
});
