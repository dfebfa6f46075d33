/**
 * The HTTP front door keeps a tunnel channel per caller connection: requests over one keep-alive
 * connection to one tenant route reuse one channel (one connection at the private service, behind
 * a real OpenSSH `ssh -R`), never shared with another caller connection, closed with the caller's
 * connection, on a change of route, after a caller left mid-answer, and after 2 s unused.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { type SshForward, sshForward } from '../helpers/openssh.js';
import { caller } from '../helpers/servers.js';
import { waitFor } from '../helpers/util.js';

/** The private service: counts its TCP connections (one per tunnel channel) and knows which are open. */
async function startService() {
  const sockets: Socket[] = [];
  /** The request paths each service connection carried. */
  const seen = new Map<Socket, string[]>();
  const server = http.createServer((req, res) => {
    seen.get(req.socket)?.push(req.url ?? '');
    if (req.url === '/hang') {
      res.writeHead(200, { 'content-length': String(4 * 1024 * 1024) });
      res.write(Buffer.alloc(64 * 1024, 0x62));
      return;
    }
    if (req.url === '/close') {
      res.writeHead(200, { connection: 'close', 'content-type': 'text/plain' }).end('bye');
      return;
    }
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end(`${req.method} ${req.url}`));
  });
  server.on('connection', (s: Socket) => {
    sockets.push(s);
    seen.set(s, []);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    sockets,
    seen,
    open: () => sockets.filter((s) => !s.destroyed).length,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A service that answers `/two` with its answer and then a second one nobody asked for. */
async function startDoubleAnswerer(): Promise<net.Server> {
  const server = net.createServer((s) => {
    s.on('data', (d: Buffer) => {
      s.write(
        d.toString('latin1').includes(' /two ')
          ? 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirstHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled'
          : 'HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nnormal',
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return server;
}

/**
 * A service that closes each connection when its second request arrives, unanswered (as a
 * service closes an idle keep-alive connection just as a request comes), and `/drop` on any
 * connection. Records every request it saw.
 */
async function startCloser(): Promise<{ server: http.Server; seen: string[] }> {
  const seen: string[] = [];
  const perSocket = new Map<Socket, number>();
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const n = (perSocket.get(req.socket) ?? 0) + 1;
    perSocket.set(req.socket, n);
    if (n >= 2 || req.url === '/drop') {
      req.socket.destroy();
      return;
    }
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end(`${req.method} ${req.url}`));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, seen };
}

describe('http-proxy: a tunnel channel kept per caller connection', () => {
  let svc: Awaited<ReturnType<typeof startService>>;
  let closer: Awaited<ReturnType<typeof startCloser>>;
  let double: net.Server;
  let gw: TestGateway;
  let ssh: SshForward | undefined;
  let port: number;

  before(async () => {
    svc = await startService();
    double = await startDoubleAnswerer();
    closer = await startCloser();
    gw = await startGateway({
      config: {
        http_proxy: {
          listen: '127.0.0.1:0',
          routes: (
            [
              ['a', 'web'],
              ['b', 'web'],
              ['c', 'closer'],
              ['d', 'double'],
            ] as const
          ).map(([name, repo]) => ({
            name,
            path_prefix: `/${name}`,
            strip_prefix: true,
            to: `tenant://acme/grp/${repo}`,
            auth: { type: 'none' },
          })),
        },
      },
    });
    port = Number((await gw.output.wait(/"http_proxy":"127\.0\.0\.1:(\d+)"/))[1]);
    const keyFile = await gw.addTenant('acme');
    ssh = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'acme',
      keyFile,
      forwards: [
        { label: 'grp/web', port: svc.port },
        { label: 'grp/double', port: (double.address() as AddressInfo).port },
        { label: 'grp/closer', port: (closer.server.address() as AddressInfo).port },
      ],
    });
  });

  after(async () => {
    await ssh?.stop();
    await gw?.stop();
    await svc?.close();
    double?.close();
    closer?.server.closeAllConnections();
    closer?.server.close();
  });

  test('10 requests over one caller connection go over one channel: one connection at the service', async () => {
    const c = caller().to(port);
    const before = svc.sockets.length;
    for (let i = 0; i < 10; i++) {
      const r = await c.send(`/a/get-${i}`, i % 2 ? { method: 'POST', body: 'x'.repeat(1000) } : {});
      assert.equal(r.status, 200);
      assert.equal(r.body, `${i % 2 ? 'POST' : 'GET'} /get-${i}`);
    }
    // One channel; a second only if a very slow machine left it unused for 2 s between two requests.
    assert.ok(
      svc.sockets.length - before <= 2,
      `${svc.sockets.length - before} service connections for 10 requests`,
    );
    c.close();
    await waitFor(() => svc.open() === 0, { timeout: 10_000, what: 'the channel to close with the caller' });
  });

  test('two caller connections never share a channel', async () => {
    const c1 = caller().to(port);
    const c2 = caller().to(port);
    const before = svc.sockets.length;
    for (let i = 0; i < 4; i++) {
      assert.equal((await c1.send('/a/one')).body, 'GET /one');
      assert.equal((await c2.send('/a/two')).body, 'GET /two');
    }
    const used = svc.sockets.slice(before);
    assert.ok(used.length >= 2 && used.length <= 4, `${used.length} service connections for 8 requests`);
    for (const s of used) {
      const paths = new Set(svc.seen.get(s));
      assert.ok(!(paths.has('/one') && paths.has('/two')), 'a channel carried both callers');
    }
    c1.close();
    c2.close();
    await waitFor(() => svc.open() === 0, { timeout: 10_000, what: 'both channels to close' });
  });

  test('another route on the same caller connection: a new channel, the old one closed', async () => {
    const c = caller().to(port);
    const before = svc.sockets.length;
    assert.equal((await c.send('/a/x')).status, 200);
    const first = svc.sockets[svc.sockets.length - 1]!;
    const r = await c.send('/b/y');
    assert.equal(r.status, 200);
    assert.equal(r.reused, true, 'the caller kept its connection');
    assert.equal(svc.sockets.length - before, 2);
    await waitFor(() => first.destroyed, { timeout: 10_000, what: 'the first route’s channel to close' });
    c.close();
    await waitFor(() => svc.open() === 0, { timeout: 10_000, what: 'the channel to close with the caller' });
  });

  test('a caller that leaves mid-answer: its channel is closed, and its next connection gets a new one', async () => {
    const before = svc.sockets.length;
    await new Promise<void>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/a/hang', agent: false }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => {});
      req.setTimeout(30_000, () => reject(new Error('no answer')));
    });
    const hung = svc.sockets[svc.sockets.length - 1]!;
    assert.equal(svc.sockets.length - before, 1);
    await waitFor(() => hung.destroyed, { timeout: 10_000, what: 'the abandoned channel to close' });
    const c = caller().to(port);
    assert.equal((await c.send('/a/after')).body, 'GET /after');
    c.close();
  });

  test('an unused channel closes after 2 s while the caller stays; the next request opens another', async () => {
    const c = caller().to(port);
    assert.equal((await c.send('/a/1')).status, 200);
    const kept = svc.sockets[svc.sockets.length - 1]!;
    // (That it is not closed at once is the first test's point: ten requests, one channel.)
    await waitFor(() => kept.destroyed, { timeout: 15_000, what: 'the idle channel to close' });
    const r = await c.send('/a/2');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'GET /2');
    c.close();
  });

  test('a service that closes after its answer: the next request on the connection gets a new channel', async () => {
    const c = caller().to(port);
    assert.equal((await c.send('/a/close')).body, 'bye');
    assert.equal((await c.send('/a/next')).body, 'GET /next');
    c.close();
  });

  test('a service that sends an answer nobody asked for: the next request on the connection still gets its own', async () => {
    const c = caller().to(port);
    assert.equal((await c.send('/d/two')).body, 'first');
    assert.equal((await c.send('/d/next')).body, 'normal');
    assert.equal((await c.send('/d/next')).body, 'normal');
    c.close();
  });

  test('a kept channel the service closed as a GET left: the GET is sent once more on a new channel; a POST is not', async () => {
    const c = caller().to(port);
    const from = closer.seen.length;
    assert.equal((await c.send('/c/first')).body, 'GET /first');
    // the service closes this connection when the next request arrives on it
    const again = await c.send('/c/second');
    assert.equal(again.status, 200);
    assert.equal(again.body, 'GET /second');
    assert.deepEqual(closer.seen.slice(from), ['GET /first', 'GET /second', 'GET /second']);

    const posted = await c.send('/c/post', { method: 'POST', body: 'x' });
    assert.equal(posted.status, 502, posted.body);
    assert.equal(closer.seen.filter((s) => s === 'POST /post').length, 1, 'a POST is never sent twice');

    // once only: a GET that fails on the new channel too gets its 502
    const d = caller().to(port);
    assert.equal((await d.send('/c/warm')).body, 'GET /warm');
    const dropped = await d.send('/c/drop');
    assert.equal(dropped.status, 502, dropped.body);
    assert.equal(closer.seen.filter((s) => s === 'GET /drop').length, 2);
    c.close();
    d.close();
  });
});
