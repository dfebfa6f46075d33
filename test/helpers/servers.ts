import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';

export interface TestServer {
  port: number;
  close(): Promise<void>;
}

async function listen(server: net.Server, host = '127.0.0.1'): Promise<number> {
  await new Promise<void>((r) => server.listen({ host, port: 0 }, () => r()));
  return (server.address() as net.AddressInfo).port;
}

function closer(server: net.Server, sockets: Set<net.Socket>): () => Promise<void> {
  return () =>
    new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
}

function track(server: net.Server): Set<net.Socket> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return sockets;
}

/** A real HTTP server answering "hello from <name> <path>". */
export async function startHttpServer(name = 'upstream'): Promise<TestServer & { requests: number }> {
  const state = { requests: 0 };
  const server = http.createServer((req, res) => {
    state.requests++;
    const body = `hello from ${name} ${req.url}\n`;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  const sockets = track(server);
  const port = await listen(server);
  return Object.assign(state, { port, close: closer(server, sockets) });
}

/** A TCP echo server. */
export async function startEchoServer(): Promise<TestServer> {
  const server = net.createServer({ noDelay: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  const sockets = track(server);
  const port = await listen(server);
  return { port, close: closer(server, sockets) };
}

/** Sends `payload` over TCP and collects everything until the peer closes or `expect` bytes arrived. */
export function tcpExchange(
  port: number,
  payload: Buffer | string,
  expect?: number,
  host = '127.0.0.1',
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    const chunks: Buffer[] = [];
    let n = 0;
    s.on('connect', () => s.write(payload));
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      n += c.length;
      if (expect !== undefined && n >= expect) {
        s.end();
        resolve(Buffer.concat(chunks));
      }
    });
    s.on('end', () => resolve(Buffer.concat(chunks)));
    s.on('error', reject);
  });
}

/** An HTTP answer read whole. */
export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTP request on a new connection to 127.0.0.1:`port`; resolves with the whole answer. */
export function request(
  port: number,
  o: {
    method?: string;
    path: string;
    headers?: http.OutgoingHttpHeaders;
    body?: string;
    /** Fails the request when no answer has come by then (instead of waiting for the file's timeout). */
    timeoutMs?: number;
  },
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const r = http.request(
      { host: '127.0.0.1', port, method: o.method ?? 'GET', path: o.path, headers: o.headers, agent: false },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          body += c.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    r.on('error', reject);
    if (o.timeoutMs !== undefined)
      r.setTimeout(o.timeoutMs, () => r.destroy(new Error(`no answer within ${o.timeoutMs} ms`)));
    r.end(o.body);
  });
}

/** One caller connection: an agent that keeps a single socket. */
export function caller() {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let port = 0;
  const send = (path: string, o: { method?: string; body?: string } = {}) =>
    new Promise<{ status: number; body: string; reused: boolean }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path, method: o.method ?? 'GET', agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, reused: req.reusedSocket }));
      });
      req.on('error', reject);
      req.end(o.body);
    });
  return {
    to(p: number) {
      port = p;
      return this;
    },
    send,
    close: () => agent.destroy(),
  };
}

/** An open TCP connection to `port` (an echo service behind it), checked with one echo. */
export async function openEcho(
  port: number,
  from: { host?: string; localAddress?: string } = {},
): Promise<net.Socket> {
  const s = net.connect({ host: from.host ?? '127.0.0.1', port, localAddress: from.localAddress });
  await echoOnce(s, 'hello\n');
  return s;
}

/** Sends `text` on `s` and waits until as many bytes came back, which must be `text`. */
export function echoOnce(s: net.Socket, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (c: Buffer) => {
      got += c.toString();
      if (got.length >= text.length) {
        s.off('data', onData);
        s.off('error', reject);
        assert.equal(got, text);
        resolve();
      }
    };
    s.on('data', onData);
    s.once('error', reject);
    if (s.connecting) s.once('connect', () => s.write(text));
    else s.write(text);
  });
}

/** Resolves with the wall-clock time the socket closed (fails after `ms`). */
export function closedAt(s: net.Socket, ms: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`connection still open after ${ms} ms`)), ms);
    s.on('error', () => {});
    s.once('close', () => {
      clearTimeout(timer);
      resolve(Date.now());
    });
    s.resume();
  });
}
