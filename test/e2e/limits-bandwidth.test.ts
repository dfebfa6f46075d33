import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { BURST_SECONDS, MIN_BURST, READ_SLICE } from '../../src/core/token-bucket.js';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import type { TestServer } from '../helpers/servers.js';
import { waitFor } from '../helpers/util.js';

/**
 * 200 kB/s each way: low enough that a saturated 2-core machine still moves it (one measured
 * under a load average of 46 moved an uncapped stream at only 1.3 MB/s), high enough that
 * the uncapped tenant's lead over it is plain.
 */
const CAP = 200_000;
const WINDOW_MS = 4000;
/** The first half second carries the bucket's burst: the cap is measured after it. */
const SKIP_MS = 500;
/** What a bucket lets through at once: its burst, plus the debt of one chunk (a read slice, a 64 KiB write). */
const BURST = Math.max(MIN_BURST, CAP * BURST_SECONDS) + Math.max(READ_SLICE, 64 * 1024);

/**
 * Bytes of one capped stream as they arrive, to check it against its bucket two ways:
 * - never faster than the bucket allows: from the moment the connection was opened (before the
 *   first byte), at most BURST + CAP x elapsed have arrived at any time. A busy machine only
 *   delays bytes, so this holds however loaded it is.
 * - at the cap while it moves: over the window, the rate against the time the bytes moved. A
 *   gateway that is not scheduled for a while sends nothing, then its saved burst; time beyond
 *   that burst is lost to the machine, not held back by the cap, so a gap longer than the burst
 *   lasts counts only up to the burst.
 */
class Arrivals {
  private readonly opened = Date.now();
  private bytes = 0;
  private last = 0;
  /** Worst excess over BURST + CAP x elapsed seen so far (<= 0 while the cap holds). */
  excess = Number.NEGATIVE_INFINITY;
  first = 0;
  private window?: { from: number; bytes: number; stalled: number };

  add(n: number): void {
    const now = Date.now();
    if (this.first === 0) this.first = now;
    if (this.window && this.last > 0) {
      this.window.stalled += Math.max(0, now - this.last - BURST_SECONDS * 1000);
    }
    this.last = now;
    this.bytes += n;
    if (this.window) this.window.bytes += n;
    this.excess = Math.max(this.excess, this.bytes - (BURST + (CAP * (now - this.opened)) / 1000));
  }

  startWindow(): void {
    this.last = Date.now();
    this.window = { from: this.last, bytes: 0, stalled: 0 };
  }

  /** Bytes per second over the window, against the time the bytes moved. */
  endWindow(): { rate: number; stalledMs: number; ms: number } {
    const w = this.window!;
    const now = Date.now();
    w.stalled += Math.max(0, now - this.last - BURST_SECONDS * 1000);
    this.window = undefined;
    const ms = now - w.from;
    return { rate: (w.bytes / Math.max(1, ms - w.stalled)) * 1000, stalledMs: w.stalled, ms };
  }
}

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

/** A destination that reads everything and records how it arrives (upload sink). */
async function startSink(): Promise<TestServer & { arrivals(): Arrivals }> {
  let current = new Arrivals();
  const server = await serve((s) => s.on('data', (c: Buffer) => current.add(c.length)));
  return {
    ...server,
    /** Starts a fresh record (call it before the upload connects). */
    arrivals: () => {
      current = new Arrivals();
      return current;
    },
  };
}

/** Measures a capped stream's arrivals over `ms`, from `skip` ms after its first byte on. */
async function measure(a: Arrivals, ms: number, skip: number) {
  await waitFor(() => a.first > 0, { what: 'the first byte', timeout: 30_000 });
  await sleep(skip);
  a.startWindow();
  await sleep(ms);
  return a.endWindow();
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

/** Reads from a capped lease port, recording the arrivals, until stopped. */
function cappedDownload(port: number): { arrivals: Arrivals; stop(): void } {
  const arrivals = new Arrivals();
  const s = net.connect({ host: '127.0.0.1', port });
  s.on('data', (c: Buffer) => arrivals.add(c.length));
  s.on('error', () => {});
  return { arrivals, stop: () => s.destroy() };
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
    const r = await gw.api('PATCH', '/v1/tenants/capped', { bandwidth: '200kB/s' });
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
    const upArrivals = sink.arrivals();
    const up = upload(cappedSink);
    const down = cappedDownload(cappedSrc);
    const downRate = measure(down.arrivals, WINDOW_MS, SKIP_MS);
    const upRate = measure(upArrivals, WINDOW_MS, SKIP_MS);
    // The uncapped tenant streams at full speed in the middle of the capped tenant's window.
    await waitFor(() => down.arrivals.first > 0 && upArrivals.first > 0, {
      what: 'both capped streams to start',
      timeout: 30_000,
    });
    await sleep(SKIP_MS + 1000);
    const alongside = await download(freePort, 2000);
    const [d, u] = await Promise.all([downRate, upRate]);
    up.stop();
    down.stop();
    const moved = (m: { rate: number; stalledMs: number; ms: number }) =>
      `${mb(m.rate)} over ${m.ms - m.stalledMs} of ${m.ms} ms (the rest the machine was busy)`;
    t.diagnostic(`capped tenant: down ${moved(d)}, up ${moved(u)} (cap ${mb(CAP)})`);
    t.diagnostic(
      `uncapped tenant alongside: ${mb(alongside)} (${Math.round((alongside / solo) * 100)}% of alone)`,
    );

    // Never above the cap: at no time more than the burst plus the cap since the connection opened.
    assert.ok(down.arrivals.excess <= 0, `download ran ${down.arrivals.excess} bytes ahead of the cap`);
    assert.ok(upArrivals.excess <= 0, `upload ran ${upArrivals.excess} bytes ahead of the cap`);
    // At the cap while the bytes move: no more than 10% below it (a bucket that paced slower
    // would show here). A stalled test process reads late and in bulk, which can only raise
    // this figure; the bound above is the one that keeps it honest from above.
    assert.ok(d.rate >= 0.9 * CAP, `download ${moved(d)} is more than 10% below the cap`);
    assert.ok(u.rate >= 0.9 * CAP, `upload ${moved(u)} is more than 10% below the cap`);
    // Not held to the cap: five times it over 2 s (the cap's burst alone is a fifth of a second).
    assert.ok(alongside > 5 * CAP, `the uncapped tenant got only ${mb(alongside)}`);
    assert.ok(alongside >= solo * 0.5, `the uncapped tenant dropped from ${mb(solo)} to ${mb(alongside)}`);
  });
});
