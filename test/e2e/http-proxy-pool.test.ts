/**
 * A URL route's upstream connections (undici's Pool): reused across callers, never reused after a
 * caller left mid-answer, kept after a refused credential's answer is read away; an upstream
 * that breaks off mid-body cuts the caller's answer short instead of ending it cleanly.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { request } from '../helpers/servers.js';
import { waitFor } from '../helpers/util.js';

const TOKEN = 'pool-test-token';

/** An upstream that counts its TCP connections and knows which are still open. */
async function startUpstream() {
  const sockets = new Set<Socket>();
  let connections = 0;
  const hanging: Socket[] = [];
  const server = http.createServer((req, res) => {
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      res.writeHead(403).end('no credential');
      return;
    }
    switch (req.url) {
      case '/small':
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
        return;
      case '/refuse':
        res.writeHead(401, { 'content-type': 'text/plain' }).end('x'.repeat(20_000));
        return;
      case '/hang':
        // A long answer that stops after its first 64 KiB and waits.
        res.writeHead(200, { 'content-length': String(10 * 1024 * 1024) });
        res.write(Buffer.alloc(64 * 1024, 0x61));
        hanging.push(req.socket);
        return;
      case '/reset':
        // reads the whole body, then drops the connection without an answer
        req.resume();
        req.on('end', () => req.socket.destroy());
        return;
      case '/cut':
        res.writeHead(200, { 'content-length': '1000' });
        res.write('0123456789', () => req.socket.destroy());
        return;
      default:
        res.writeHead(404).end();
    }
  });
  server.on('connection', (s: Socket) => {
    connections++;
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => connections,
    open: () => sockets.size,
    hanging,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/**
 * An upstream that answers `/two` twice (the second answer in the same write) and `/late` with a
 * second answer 100 ms after the first: answers nobody asked for.
 */
async function startDoubleAnswerer(): Promise<{ server: net.Server; lateClosed: Promise<void> }> {
  const second = 'HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled';
  let closed: () => void = () => {};
  const lateClosed = new Promise<void>((r) => {
    closed = r;
  });
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.on('data', (d: Buffer) => {
      const head = d.toString('latin1');
      if (head.includes(' /two ')) s.write(`HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst${second}`);
      else if (head.includes(' /late ')) {
        s.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate');
        setTimeout(() => {
          // the front door's pool drops a connection that sends what nobody asked for
          s.once('close', () => closed());
          if (s.writable) s.write(second);
        }, 100);
      } else s.write('HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nnormal');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, lateClosed };
}

interface Answer {
  status: number;
  body: string;
  complete: boolean;
}

function get(port: number, path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.setEncoding('latin1');
        res.on('data', (c: string) => {
          body += c;
        });
        const done = () => resolve({ status: res.statusCode ?? 0, body, complete: res.complete });
        res.on('end', done);
        res.on('error', done);
        res.on('aborted', done);
      })
      .on('error', reject);
  });
}

describe('http-proxy: a URL route keeps its upstream connections', () => {
  let up: Awaited<ReturnType<typeof startUpstream>>;
  let double: Awaited<ReturnType<typeof startDoubleAnswerer>>;
  let gw: TestGateway;
  let port: number;

  before(async () => {
    up = await startUpstream();
    double = await startDoubleAnswerer();
    gw = await startGateway({
      config: {
        http_proxy: {
          listen: '127.0.0.1:0',
          routes: [
            {
              name: 'up',
              path_prefix: '/up',
              strip_prefix: true,
              to: `http://127.0.0.1:${up.port}`,
              auth: { type: 'none' },
              upstream_auth: { type: 'bearer', token: TOKEN },
            },
            {
              name: 'double',
              path_prefix: '/double',
              strip_prefix: true,
              to: `http://127.0.0.1:${(double.server.address() as AddressInfo).port}`,
              auth: { type: 'none' },
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
    double?.server.close();
  });

  test('30 callers one after another reach the upstream over one kept connection', async () => {
    const before = up.connections();
    for (let i = 0; i < 30; i++) {
      const r = await get(port, '/up/small');
      assert.equal(r.status, 200);
      assert.equal(r.body, '{"ok":true}');
    }
    // One connection, reused; a second only if the upstream closed an idle one on a very slow machine.
    assert.ok(
      up.connections() - before <= 2,
      `${up.connections() - before} upstream connections for 30 requests`,
    );
  });

  test('64 callers at once are all answered, and the connections they opened are reused', async () => {
    const rs = await Promise.all(Array.from({ length: 64 }, () => get(port, '/up/small')));
    assert.deepEqual(
      rs.map((r) => r.status),
      rs.map(() => 200),
    );
    const opened = up.connections();
    for (let i = 0; i < 10; i++) assert.equal((await get(port, '/up/small')).status, 200);
    assert.ok(up.connections() - opened <= 1, 'sequential requests after the burst reuse its connections');
  });

  test('a caller that leaves mid-answer: its upstream connection is closed, never reused; the next caller is served', async () => {
    const hangingBefore = up.hanging.length;
    await new Promise<void>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/up/hang', agent: false }, (res) => {
        assert.equal(res.statusCode, 200);
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => {});
      req.setTimeout(30_000, () => reject(new Error('no answer')));
    });
    await waitFor(() => up.hanging.length > hangingBefore, {
      timeout: 10_000,
      what: 'the upstream got the request',
    });
    const s = up.hanging[up.hanging.length - 1]!;
    await waitFor(() => s.destroyed, {
      timeout: 10_000,
      what: 'the upstream connection of the caller who left is closed',
    });
    assert.equal((await get(port, '/up/small')).status, 200);
  });

  test('an upstream that refuses the injected credential: 502 UPSTREAM_AUTH_REFUSED; its connection stays in use', async () => {
    assert.equal((await get(port, '/up/small')).status, 200);
    const opened = up.connections();
    const r = await get(port, '/up/refuse');
    assert.equal(r.status, 502);
    assert.deepEqual(JSON.parse(r.body), {
      error: { code: 'UPSTREAM_AUTH_REFUSED', message: "the upstream refused the front door's credential" },
    });
    await gw.output.wait(/"event":"http_proxy.upstream_refused_credential"/);
    assert.equal((await get(port, '/up/small')).status, 200);
    assert.equal(up.connections(), opened, 'the refused answer was read away, the connection kept');
  });

  test('an upstream that breaks off mid-body: the caller’s answer is cut short, not ended cleanly; the gateway lives', async () => {
    const r = await get(port, '/up/cut');
    assert.equal(r.status, 200);
    assert.equal(r.complete, false);
    assert.ok(r.body.length < 1000, `${r.body.length} bytes`);
    assert.equal((await get(port, '/up/small')).status, 200);
    assert.equal(gw.process.exitCode, null);
  });

  test('an upstream that sends answers nobody asked for: the next callers get their own, never those', async () => {
    assert.equal((await get(port, '/double/two')).body, 'first');
    assert.equal((await get(port, '/double/next')).body, 'normal');
    assert.equal((await get(port, '/double/late')).body, 'late');
    // the unasked-for answer comes 100 ms after that one: the pool drops that connection
    await double.lateClosed;
    for (let i = 0; i < 3; i++) assert.equal((await get(port, '/double/next')).body, 'normal');
  });

  test('an upstream that drops a POST after reading its body: the caller gets 502 UPSTREAM_UNREACHABLE, not silence', async () => {
    const r = await request(port, {
      method: 'POST',
      path: '/up/reset',
      body: 'x'.repeat(10_000),
      timeoutMs: 30_000,
    });
    assert.equal(r.status, 502);
    assert.deepEqual(JSON.parse(r.body), {
      error: { code: 'UPSTREAM_UNREACHABLE', message: 'the upstream could not be reached' },
    });
  });
});
