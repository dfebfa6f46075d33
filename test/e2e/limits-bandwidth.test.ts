import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import type { TestServer } from '../helpers/servers.js';

const CAP = 1_000_000; // 1 MB/s each way
const WINDOW_MS = 4000;
/** The first half second carries the bucket's burst: the cap is measured after it. */
const SKIP_MS = 500;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function serve(onSocket: (s: net.Socket) => void): Promise<TestServer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    onSocket(s);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: (server.address() as net.AddressInfo).port,
        close: () =>
          new Promise<void>((r) => {
            for (const s of sockets) s.destroy();
            server.close(() => r());
          }),
      }),
    ),
  );
}

/** A destination that sends as fast as its reader takes (download source). */
function startSource(): Promise<TestServer> {
  const chunk = Buffer.alloc(64 * 1024, 'd');
  return serve((s) => {
    const pump = () => {
      while (!s.destroyed && s.write(chunk));
    };
    s.on('drain', pump);
    pump();
  });
}

/** A destination that reads everything and measures how fast it arrives (upload sink). */
async function startSink(): Promise<TestServer & { measure(ms: number, skip: number): Promise<number> }> {
  let received = 0;
  let first = 0;
  const waiters: Array<() => void> = [];
  const server = await serve((s) =>
    s.on('data', (c: Buffer) => {
      if (first === 0) {
        first = Date.now();
        for (const w of waiters.splice(0)) w();
      }
      received += c.length;
    }),
  );
  return {
    ...server,
    /** Bytes per second arriving over `ms`, from `skip` ms after the first byte on. */
    measure: async (ms, skip) => {
      if (first === 0) await new Promise<void>((r) => waiters.push(r));
      await sleep(skip);
      const start = received;
      const t0 = Date.now();
      await sleep(ms);
      return ((received - start) / (Date.now() - t0)) * 1000;
    },
  };
}

/** Reads from a lease port; bytes per second over `ms`, from `skip` ms after the first byte on. */
function download(port: number, ms: number, skip = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let started = false;
    let counting = false;
    let n = 0;
    s.on('data', (c: Buffer) => {
      if (counting) n += c.length;
      if (started) return;
      started = true;
      setTimeout(() => {
        counting = true;
        const t0 = Date.now();
        setTimeout(() => {
          s.destroy();
          resolve((n / (Date.now() - t0)) * 1000);
        }, ms);
      }, skip);
    });
    s.on('error', reject);
  });
}

/** Writes to a lease port as fast as it takes, until stopped. */
function upload(port: number): { stop(): void } {
  const s = net.connect({ host: '127.0.0.1', port });
  const chunk = Buffer.alloc(64 * 1024, 'u');
  s.on('error', () => {});
  const pump = () => {
    while (!s.destroyed && s.write(chunk));
  };
  s.on('connect', pump);
  s.on('drain', pump);
  return { stop: () => s.destroy() };
}

const mb = (bps: number) => `${(bps / 1e6).toFixed(2)} MB/s`;

describe('bandwidth caps', () => {
  let gw: TestGateway;
  let source: TestServer;
  let sink: Awaited<ReturnType<typeof startSink>>;
  let capped: TestConnector;
  let free: TestConnector;

  before(async () => {
    gw = await startGateway();
    source = await startSource();
    sink = await startSink();
    const repos = { grp: { src: `tcp://127.0.0.1:${source.port}`, sink: `tcp://127.0.0.1:${sink.port}` } };
    capped = await startConnector({
      gateway: gw.sshPort,
      tenant: 'capped',
      keyFile: await gw.addTenant('capped'),
      repositories: repos,
    });
    free = await startConnector({
      gateway: gw.sshPort,
      tenant: 'free',
      keyFile: await gw.addTenant('free'),
      repositories: { grp: { src: repos.grp.src } },
    });
    const r = await gw.api('PATCH', '/v1/tenants/capped', { bandwidth: '1MB/s' });
    assert.equal(r.status, 200, JSON.stringify(r.json));
  });
  after(async () => {
    await capped?.stop();
    await free?.stop();
    await gw?.stop();
    await source?.close();
    await sink?.close();
  });

  test('a capped tenant measures at its cap (±10%) each way while an uncapped tenant keeps its throughput', async (t) => {
    const freePort = await free.leasePort('grp/src');
    await download(freePort, 500); // warm up (SSH windows, JIT) before the baseline
    const solo = await download(freePort, 2000);
    t.diagnostic(`uncapped tenant alone: ${mb(solo)}`);

    const cappedSrc = await capped.leasePort('grp/src');
    const cappedSink = await capped.leasePort('grp/sink');
    const up = upload(cappedSink);
    const down = download(cappedSrc, WINDOW_MS, SKIP_MS);
    const upRate = sink.measure(WINDOW_MS, SKIP_MS);
    // The uncapped tenant streams at full speed in the middle of the capped tenant's window.
    await sleep(SKIP_MS + 1000);
    const alongside = await download(freePort, 2000);
    const [downRate, upMeasured] = await Promise.all([down, upRate]);
    up.stop();
    t.diagnostic(`capped tenant: down ${mb(downRate)}, up ${mb(upMeasured)} (cap ${mb(CAP)})`);
    t.diagnostic(
      `uncapped tenant alongside: ${mb(alongside)} (${Math.round((alongside / solo) * 100)}% of alone)`,
    );

    assert.ok(Math.abs(downRate - CAP) / CAP <= 0.1, `download ${mb(downRate)} is not within 10% of the cap`);
    assert.ok(
      Math.abs(upMeasured - CAP) / CAP <= 0.1,
      `upload ${mb(upMeasured)} is not within 10% of the cap`,
    );
    assert.ok(alongside > 10 * CAP, `the uncapped tenant got only ${mb(alongside)}`);
    assert.ok(alongside >= solo * 0.5, `the uncapped tenant dropped from ${mb(solo)} to ${mb(alongside)}`);
  });
});
