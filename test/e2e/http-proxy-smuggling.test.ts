/**
 * HTTP request smuggling and crash resistance at the HTTP front door: raw bytes from a caller
 * socket through the real gateway to a recording upstream that parses strictly (node's llhttp)
 * and records exactly what it parsed. Each legitimate request must arrive once, nothing else
 * may arrive, and no response may carry the credential the gateway injects. Then upstreams
 * that break HTTP and a credential file with a byte invalid in a header value: the caller gets
 * 502, the gateway lives, the next request works.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { tempDir, waitFor } from '../helpers/util.js';

const TOKEN = 'SECRET-UPSTREAM-TOKEN';

interface Seen {
  method: string;
  url: string;
  auth: string | undefined;
  body: string;
}

/** A strict HTTP/1.1 upstream that records every request it parsed (and every parse error). */
async function startRecorder() {
  const seen: Array<Seen | { parseError: string }> = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('latin1');
    req.on('data', (c: string) => {
      body += c;
    });
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', auth: req.headers.authorization, body });
      // /reflect answers with everything it got, as the upstream in the report did.
      const out = req.url?.includes('/reflect')
        ? JSON.stringify({ headers: req.headers, body })
        : JSON.stringify({ method: req.method, url: req.url, bodyBytes: body.length });
      res
        .writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) })
        .end(out);
    });
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    seen.push({ parseError: String(err.code) });
    socket.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** An upstream that answers every connection with the same raw bytes (broken HTTP on purpose). */
async function startRawUpstream(answer: string) {
  const server = net.createServer((s) => {
    s.once('data', () => s.end(answer, 'latin1'));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as AddressInfo).port, close: () => new Promise((r) => server.close(r)) };
}

interface Answer {
  status: number;
  head: string;
  body: string;
}

/** Splits what came back on a caller socket into responses (all carry Content-Length here). */
function parseResponses(buf: string): { responses: Answer[]; rest: string } {
  const responses: Answer[] = [];
  let rest = buf;
  for (;;) {
    const h = rest.indexOf('\r\n\r\n');
    if (h < 0) break;
    const head = rest.slice(0, h);
    const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
    if (rest.length < h + 4 + len) break;
    responses.push({ status: Number(head.split(' ')[1]), head, body: rest.slice(h + 4, h + 4 + len) });
    rest = rest.slice(h + 4 + len);
  }
  return { responses, rest };
}

/** Sends raw bytes on one socket; resolves once `expect` responses arrived or the gateway closed it. */
function exchange(
  port: number,
  bytes: string,
  expect: number,
): Promise<{ responses: Answer[]; raw: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(bytes, 'latin1'));
    let buf = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no ${expect} responses within 20 s: ${JSON.stringify(buf)}`));
    }, 20_000);
    const finish = () => {
      clearTimeout(timer);
      s.destroy();
      resolve({ responses: parseResponses(buf).responses, raw: buf });
    };
    s.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      if (parseResponses(buf).responses.length >= expect) finish();
    });
    s.on('close', finish);
    s.on('error', () => {});
  });
}

const smuggled = `DELETE /rw/reflect HTTP/1.1\r\nHost: x\r\n\r\n`;

/** A request with a Content-Length body. */
const withBody = (method: string, path: string, body: string, extra = '', version = '1.1') =>
  `${method} ${path} HTTP/${version}\r\nHost: x\r\n${extra}Content-Length: ${Buffer.byteLength(body, 'latin1')}\r\n\r\n${body}`;
const chunk = (body: string) => `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;

interface Case {
  name: string;
  bytes: string;
  /** Statuses the caller gets, in order. */
  statuses: number[];
  /** What the upstream must have parsed ("METHOD url body"), in order. */
  upstream: string[];
}

const cases: Case[] = [
  {
    name: 'Connection names Content-Length (the reported attack, read-write route)',
    bytes: withBody('POST', '/rw/a', smuggled, 'Connection: content-length\r\n'),
    statuses: [400],
    upstream: [],
  },
  {
    name: 'Connection names Content-Length on a read-only route (GET carrying a DELETE)',
    bytes: withBody('GET', '/ro/a', smuggled, 'Connection: keep-alive, Content-Length\r\n'),
    statuses: [400],
    upstream: [],
  },
  {
    name: 'Connection names Transfer-Encoding',
    bytes: `POST /rw/a HTTP/1.1\r\nHost: x\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n${chunk(smuggled)}`,
    statuses: [400],
    upstream: [],
  },
  {
    name: 'Connection names Host',
    bytes: 'GET /rw/a HTTP/1.1\r\nHost: x\r\nConnection: host\r\n\r\n',
    statuses: [400],
    upstream: [],
  },
  {
    name: 'CL.TE',
    bytes: `POST /rw/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`,
    statuses: [400],
    upstream: [],
  },
  {
    name: 'TE.CL',
    bytes: `POST /rw/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n${chunk(smuggled)}`,
    statuses: [400],
    upstream: [],
  },
  ...[
    'Transfer-Encoding: xchunked',
    'Transfer-Encoding : chunked',
    'Transfer-Encoding: chunked\r\nTransfer-Encoding: identity',
    'Transfer-Encoding: identity\r\nTransfer-Encoding: chunked',
    'Transfer-Encoding: identity, chunked',
    'Transfer-Encoding:\r\n chunked',
  ].map((te) => ({
    name: `TE.TE: ${JSON.stringify(te)}`,
    bytes: `POST /rw/a HTTP/1.1\r\nHost: x\r\n${te}\r\n\r\n${chunk(smuggled)}`,
    statuses: [400],
    upstream: [],
  })),
  {
    name: 'TE with a tab and upper case is one chunked body (accepted, re-framed)',
    bytes: `POST /rw/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tCHUNKED\r\n\r\n${chunk(smuggled)}`,
    statuses: [200],
    upstream: [`POST /rw/a ${smuggled}`],
  },
  {
    name: 'duplicated Content-Length (same value)',
    bytes: `POST /rw/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc`,
    statuses: [400],
    upstream: [],
  },
  {
    name: 'conflicting Content-Length',
    bytes: `POST /rw/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: ${3 + smuggled.length}\r\n\r\nabc${smuggled}`,
    statuses: [400],
    upstream: [],
  },
  {
    name: 'Content-Length list',
    bytes: `POST /rw/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc`,
    statuses: [400],
    upstream: [],
  },
  {
    name: 'obs-fold in a header',
    bytes: `GET /rw/a HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n`,
    statuses: [400],
    upstream: [],
  },
  {
    name: 'bare LF line ends',
    bytes: `POST /rw/a HTTP/1.1\nHost: x\nContent-Length: 3\n\nabc`,
    statuses: [400],
    upstream: [],
  },
  {
    name: 'bare LF after a header value',
    bytes: `POST /rw/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\n\r\nabc`,
    statuses: [400],
    upstream: [],
  },
  {
    name: 'chunked on HTTP/1.0',
    bytes: `POST /rw/a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${chunk(smuggled)}`,
    statuses: [400],
    upstream: [],
  },
  {
    name: 'three pipelined requests on one keep-alive socket, a body that looks like a request',
    bytes: `GET /rw/1 HTTP/1.1\r\nHost: x\r\n\r\n${withBody('POST', '/rw/2', smuggled)}GET /rw/3 HTTP/1.1\r\nHost: x\r\n\r\n`,
    statuses: [200, 200, 200],
    upstream: ['GET /rw/1 ', `POST /rw/2 ${smuggled}`, 'GET /rw/3 '],
  },
  {
    name: 'HTTP/1.0 keep-alive, then a body that looks like a request',
    bytes: `GET /rw/1 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n${withBody('PUT', '/rw/2', smuggled, 'Connection: keep-alive\r\n', '1.0')}`,
    statuses: [200, 200],
    upstream: ['GET /rw/1 ', `PUT /rw/2 ${smuggled}`],
  },
  {
    name: 'a read-only route refuses a body (Content-Length)',
    bytes: withBody('GET', '/ro/a', smuggled),
    statuses: [400],
    upstream: [],
  },
  {
    name: 'a read-only route refuses a body (chunked)',
    bytes: `GET /ro/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${chunk(smuggled)}`,
    statuses: [400],
    upstream: [],
  },
  {
    name: 'a read-only route refuses DELETE',
    bytes: 'DELETE /ro/a HTTP/1.1\r\nHost: x\r\n\r\n',
    statuses: [405],
    upstream: [],
  },
  {
    name: 'a read-only route passes bodiless GETs (Content-Length: 0 and none)',
    bytes: 'GET /ro/a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\nGET /ro/b HTTP/1.1\r\nHost: x\r\n\r\n',
    statuses: [200, 200],
    upstream: ['GET /ro/a ', 'GET /ro/b '],
  },
];

describe('http-proxy: request smuggling matrix against a strict recording upstream', () => {
  let dir: string;
  let rec: Awaited<ReturnType<typeof startRecorder>>;
  let badStatus: Awaited<ReturnType<typeof startRawUpstream>>;
  let badReason: Awaited<ReturnType<typeof startRawUpstream>>;
  let notHttp: Awaited<ReturnType<typeof startRawUpstream>>;
  let gw: TestGateway;
  let port: number;
  let credFile: string;
  let badCredFile: string;

  before(async () => {
    dir = tempDir('tether-smuggle-');
    rec = await startRecorder();
    badStatus = await startRawUpstream('HTTP/1.1 999 Odd\r\nContent-Length: 2\r\n\r\nhi');
    badReason = await startRawUpstream('HTTP/1.1 200 O\u0001K\r\nContent-Length: 2\r\n\r\nhi');
    notHttp = await startRawUpstream('SSH-2.0-OpenSSH_9.6\r\n');
    credFile = join(dir, 'token');
    writeFileSync(credFile, `${TOKEN}\n`);
    badCredFile = join(dir, 'bad-token');
    writeFileSync(badCredFile, 'sekrit\u0001value\n');
    const up = `http://127.0.0.1:${rec.port}`;
    const inject = { type: 'bearer', token_file: credFile };
    gw = await startGateway({
      config: {
        http_proxy: {
          listen: '127.0.0.1:0',
          routes: [
            { name: 'rw', path_prefix: '/rw', to: up, auth: { type: 'none' }, upstream_auth: inject },
            {
              name: 'ro',
              path_prefix: '/ro',
              to: up,
              auth: { type: 'none' },
              read_only: true,
              upstream_auth: inject,
            },
            {
              name: 'badcred',
              path_prefix: '/badcred',
              to: up,
              auth: { type: 'none' },
              upstream_auth: { type: 'header', name: 'X-Api-Key', value_file: badCredFile },
            },
            {
              name: 'status999',
              path_prefix: '/s999',
              to: `http://127.0.0.1:${badStatus.port}`,
              auth: { type: 'none' },
            },
            {
              name: 'reason',
              path_prefix: '/reason',
              to: `http://127.0.0.1:${badReason.port}`,
              auth: { type: 'none' },
            },
            {
              name: 'nothttp',
              path_prefix: '/nothttp',
              to: `http://127.0.0.1:${notHttp.port}`,
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
    await rec?.close();
    await badStatus?.close();
    await badReason?.close();
    await notHttp?.close();
  });

  for (const c of cases) {
    test(c.name, async () => {
      const from = rec.seen.length;
      const got = await exchange(port, c.bytes, c.statuses.length);
      assert.deepEqual(
        got.responses.map((r) => r.status),
        c.statuses,
        `what the caller got: ${JSON.stringify(got.raw)}`,
      );
      assert.ok(!got.raw.includes(TOKEN), 'the caller never reads the injected credential');
      // A sentinel on a fresh socket: anything smuggled on a reused upstream socket is parsed before it.
      const sentinel = await exchange(port, 'GET /rw/sentinel HTTP/1.1\r\nHost: x\r\n\r\n', 1);
      assert.equal(sentinel.responses[0]?.status, 200);
      const seen = rec.seen.slice(from);
      assert.deepEqual(
        seen.map((s) =>
          'parseError' in s ? `parse error ${s.parseError}` : `${s.method} ${s.url} ${s.body}`,
        ),
        [...c.upstream, 'GET /rw/sentinel '],
        'the upstream parsed each legitimate request once and nothing else',
      );
      for (const s of seen) assert.equal('auth' in s ? s.auth : undefined, `Bearer ${TOKEN}`);
    });
  }

  test('a refused framing tells the caller why, and is counted', async () => {
    const r = await exchange(port, withBody('POST', '/rw/a', 'abc', 'Connection: Content-Length\r\n'), 1);
    assert.deepEqual(JSON.parse(r.responses[0]!.body), {
      error: {
        code: 'BAD_FRAMING',
        message: 'the Connection header may not name content-length (framing headers are not hop-by-hop)',
      },
    });
    const ro = await exchange(port, withBody('GET', '/ro/a', 'abc'), 1);
    assert.deepEqual(JSON.parse(ro.responses[0]!.body), {
      error: { code: 'READ_ONLY_BODY', message: 'this route is read-only: a request body is not allowed' },
    });
    await gw.output.wait(/"reason":"http_framing"/);
    await gw.output.wait(/"reason":"http_read_only_body"/);
  });

  for (const [path, problem] of [
    ['/s999/x', 'status 999'],
    ['/reason/x', 'a control character in its reason phrase'],
    // undici's parser (URL routes) names no HPE_ code for this one, only the reason.
    ['/nothttp/x', 'Response does not match the HTTP/1.1 protocol'],
  ] as const) {
    test(`an upstream that breaks HTTP (${problem}) gets the caller a 502; the gateway lives`, async () => {
      const r = await exchange(port, `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`, 1);
      assert.equal(r.responses[0]?.status, 502, r.raw);
      assert.deepEqual(JSON.parse(r.responses[0]!.body), {
        error: { code: 'UPSTREAM_BAD_RESPONSE', message: 'the upstream sent a malformed response' },
      });
      await gw.output.wait(new RegExp(`sent a malformed response \\(${problem.replace(/[()]/g, '\\$&')}`));
      const next = await exchange(port, 'GET /rw/after HTTP/1.1\r\nHost: x\r\n\r\n', 1);
      assert.equal(next.responses[0]?.status, 200);
      assert.equal(gw.process.exitCode, null);
    });
  }

  test('a credential file with a byte invalid in a header value: 502 until it is fixed, then 200', async () => {
    const bad = await exchange(port, 'GET /badcred/x HTTP/1.1\r\nHost: x\r\n\r\n', 1);
    assert.equal(bad.responses[0]?.status, 502, bad.raw);
    const err = JSON.parse(bad.responses[0]!.body) as { error: { code: string; message: string } };
    assert.equal(err.error.code, 'UPSTREAM_CREDENTIAL_INVALID');
    assert.match(err.error.message, /not valid .*U\+0001 at position 7/);
    assert.ok(!err.error.message.includes('sekrit'), 'the value itself is never shown');
    await gw.output.wait(
      new RegExp(
        `upstream credential file ${badCredFile.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} cannot be used`,
      ),
    );
    assert.equal(gw.process.exitCode, null);
    assert.equal(
      (await exchange(port, 'GET /rw/alive HTTP/1.1\r\nHost: x\r\n\r\n', 1)).responses[0]?.status,
      200,
    );
    writeFileSync(badCredFile, 'good-key\n');
    const from = rec.seen.length;
    await waitFor(
      async () =>
        (await exchange(port, 'GET /badcred/y HTTP/1.1\r\nHost: x\r\n\r\n', 1)).responses[0]?.status === 200,
      { timeout: 10_000 },
    );
    assert.ok(rec.seen.slice(from).some((s) => 'url' in s && s.url === '/badcred/y'));
  });

  test('refusals are counted in tether_refused_total', async () => {
    await waitFor(
      async () => {
        const m = await (
          await fetch(`${gw.adminUrl}/metrics`, { headers: { authorization: `Bearer ${gw.adminToken}` } })
        ).text();
        return [
          'http_framing',
          'http_read_only_body',
          'upstream_bad_response',
          'upstream_credential_invalid',
        ].every((r) => new RegExp(`tether_refused_total\\{reason="${r}"\\} [1-9]`).test(m));
      },
      { timeout: 15_000 },
    );
  });
});
