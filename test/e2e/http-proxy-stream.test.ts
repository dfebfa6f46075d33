/**
 * The HTTP front door streams: a 1 GiB blob goes through in Docker Registry mode (down and
 * up) while the gateway's memory stays flat, and a transfer longer than every timeout is not
 * cut, while an upstream that never answers is.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

const GiB = 1024 * 1024 * 1024;
const CHUNK = Buffer.alloc(1024 * 1024, 0x5a);

/** Resident memory of a process, in bytes. */
function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}

/**
 * Samples a process's RSS against the progress of a transfer (0..1). `stop` gives the peak,
 * and the peaks of the first and second half of the transfer: flat memory means the second
 * half needs no more than the first.
 */
function sampleRss(
  pid: number,
  progress: () => number,
): { stop(): { peak: number; firstHalf: number; secondHalf: number } } {
  let firstHalf = rss(pid);
  let secondHalf = 0;
  const t = setInterval(() => {
    const r = rss(pid);
    if (progress() < 0.5) firstHalf = Math.max(firstHalf, r);
    else secondHalf = Math.max(secondHalf, r);
  }, 25);
  return {
    stop() {
      clearInterval(t);
      secondHalf = Math.max(secondHalf, rss(pid));
      return { peak: Math.max(firstHalf, secondHalf), firstHalf, secondHalf };
    },
  };
}

const MiB = (n: number) => `${Math.round(n / 2 ** 20)} MiB`;

function assertFlat(
  what: string,
  base: number,
  m: { peak: number; firstHalf: number; secondHalf: number },
): void {
  process.stdout.write(
    `# ${what}: gateway RSS ${MiB(base)} before, peak ${MiB(m.firstHalf)} in the first half, ${MiB(m.secondHalf)} in the second\n`,
  );
  assert.ok(
    m.peak - base < 96 * 2 ** 20,
    `the gateway grew by ${MiB(m.peak - base)} while 1 GiB went through`,
  );
  // The binary keeps V8 from collecting its old space below 64 MiB (src/bin/node-flags.ts): what
  // a transfer promotes there (about 17 MiB of it is live in an idle gateway) may pile up for the
  // first tens of MiB before the first mark-compact, in either half. Growth beyond that is
  // buffering.
  assert.ok(
    m.secondHalf - m.firstHalf < 48 * 2 ** 20,
    `memory kept growing: ${MiB(m.firstHalf)} then ${MiB(m.secondHalf)}`,
  );
}

/** Writes `total` bytes to a writable with backpressure. */
function pump(
  w: NodeJS.WritableStream,
  total: number,
  done: () => void,
  progress?: (sent: number) => void,
): void {
  let left = total;
  const more = () => {
    while (left > 0) {
      const n = Math.min(left, CHUNK.length);
      left -= n;
      progress?.(total - left);
      if (!w.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
        w.once('drain', more);
        return;
      }
    }
    done();
  };
  more();
}

async function startBlobServer() {
  const server = http.createServer((req, res) => {
    const url = req.url ?? '';
    if (url === '/v2/') return res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    if (url.endsWith('/blobs/sha256:big') && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': GiB });
      return pump(res, GiB, () => res.end());
    }
    if (url.endsWith('/blobs/sha256:slow')) {
      // 32 KiB every 100 ms for 3 s: longer than every timeout of the route.
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      let n = 0;
      const t = setInterval(() => {
        res.write(CHUNK.subarray(0, 32 * 1024));
        if (++n === 30) {
          clearInterval(t);
          res.end();
        }
      }, 100);
      res.on('close', () => clearInterval(t));
      return;
    }
    if (url.includes('/manifests/stall')) return; // never answers
    if (url.includes('/blobs/uploads/')) {
      let bytes = 0;
      req.on('data', (c: Buffer) => {
        bytes += c.length;
      });
      req.on('end', () =>
        res.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify({ bytes })),
      );
      return;
    }
    res.writeHead(404).end();
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

describe('http-proxy: streaming through the front door', () => {
  let up: Awaited<ReturnType<typeof startBlobServer>>;
  let gw: TestGateway;
  let port: number;

  before(async () => {
    up = await startBlobServer();
    gw = await startGateway({
      config: {
        http_proxy: {
          listen: '127.0.0.1:0',
          header_timeout: '1s',
          connect_timeout: '1s',
          response_timeout: '1s',
          idle_timeout: '1s',
          routes: [
            {
              to: `http://127.0.0.1:${up.port}`,
              docker_registry: true,
              auth: { type: 'none' },
              upstream_auth: { type: 'basic', username: 'puller', password: 'x' },
            },
          ],
        },
      },
    });
    port = Number((await gw.output.wait(/"http_proxy":"127\.0\.0\.1:(\d+)"/))[1]);
  });

  after(async () => {
    await gw?.stop();
    await up?.close();
  });

  let moved = 0;
  const download = (path: string) =>
    new Promise<{ status: number; bytes: number; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
          let bytes = 0;
          res.on('data', (c: Buffer) => {
            bytes += c.length;
            moved = bytes;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, headers: res.headers }));
          res.on('error', reject);
        })
        .on('error', reject);
    });

  test('a 1 GiB blob streams down without buffering: memory stays flat', async () => {
    const pid = gw.process.pid!;
    await download('/v2/');
    const base = rss(pid);
    moved = 0;
    const sampler = sampleRss(pid, () => moved / GiB);
    const r = await download('/v2/acme/big/blobs/sha256:big');
    const m = sampler.stop();
    assert.equal(r.status, 200);
    assert.equal(r.bytes, GiB);
    assert.equal(r.headers['docker-distribution-api-version'], 'registry/2.0');
    assertFlat('download 1 GiB', base, m);
  });

  test('a 1 GiB upload streams up without buffering: memory stays flat', async () => {
    const pid = gw.process.pid!;
    const base = rss(pid);
    let sent = 0;
    const sampler = sampleRss(pid, () => sent / GiB);
    const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          method: 'PATCH',
          path: '/v2/acme/big/blobs/uploads/1234',
          agent: false,
          headers: { 'content-type': 'application/octet-stream' },
        },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => {
            body += c.toString();
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      pump(
        req,
        GiB,
        () => req.end(),
        (n) => {
          sent = n;
        },
      );
    });
    const m = sampler.stop();
    assert.equal(r.status, 202);
    assert.deepEqual(JSON.parse(r.body), { bytes: GiB });
    assertFlat('upload 1 GiB', base, m);
  });

  test('a transfer longer than every timeout (1 s each, 3 s of steady data) is not cut', async () => {
    const t0 = Date.now();
    const r = await download('/v2/acme/app/blobs/sha256:slow');
    assert.equal(r.status, 200);
    assert.equal(r.bytes, 30 * 32 * 1024);
    assert.ok(Date.now() - t0 >= 2_500);
  });

  test('an upstream that never answers: 504 UNAVAILABLE after response_timeout', async () => {
    const t0 = Date.now();
    const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/v2/acme/app/manifests/stall', agent: false }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => {
            body += c.toString();
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        })
        .on('error', reject);
    });
    assert.equal(r.status, 504);
    assert.deepEqual(JSON.parse(r.body), {
      errors: [
        { code: 'UNAVAILABLE', message: 'the upstream did not answer in time (response)', detail: null },
      ],
    });
    assert.ok(Date.now() - t0 < 5_000);
  });
});
