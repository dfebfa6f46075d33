import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { Duplex } from 'node:stream';
import { describe, it } from 'node:test';
import { endToEndHeaders, forwardHttp, httpSchemeOf } from './http-forward.js';

const meta = (service: string | null, scheme: string | null = null) => ({
  service,
  scheme,
  host: 'h',
  dest_port: 80,
  path: null,
});

describe('httpSchemeOf', () => {
  it('knows the HTTP-based services and their scheme', () => {
    assert.equal(httpSchemeOf(meta('http')), 'http');
    assert.equal(httpSchemeOf(meta('https')), 'https');
    assert.equal(httpSchemeOf(meta('webdav', 'http')), 'http');
    assert.equal(httpSchemeOf(meta('webdav', 'https')), 'https');
    assert.equal(httpSchemeOf(meta('cmis', 'https')), 'https');
    assert.equal(httpSchemeOf(meta('cq5', 'http')), 'http');
    assert.equal(httpSchemeOf(meta('alfresco', 'https')), 'https');
  });

  it('refuses other and unknown services', () => {
    for (const s of ['ssh', 'smb', 'tcp', null]) assert.equal(httpSchemeOf(meta(s)), undefined, String(s));
    assert.equal(httpSchemeOf(null), undefined);
  });
});

describe('endToEndHeaders', () => {
  it('drops hop-by-hop headers, those the Connection header names, and the proxy credentials', () => {
    const raw = [
      'Host',
      'web.grp.acme',
      'Proxy-Authorization',
      'Basic eA==',
      'Proxy-Connection',
      'keep-alive',
      'Connection',
      'keep-alive, X-Secret-Hop',
      'X-Secret-Hop',
      '1',
      'Keep-Alive',
      'timeout=5',
      'TE',
      'trailers',
      'Transfer-Encoding',
      'chunked',
      'Upgrade',
      'h2c',
      'Accept',
      'text/plain',
      'X-Multi',
      'a',
      'X-Multi',
      'b',
    ];
    assert.deepEqual(endToEndHeaders(raw, ['host']), [
      ['Accept', 'text/plain'],
      ['X-Multi', 'a'],
      ['X-Multi', 'b'],
    ]);
  });
});

describe('forwardHttp framing and broken answers', () => {
  /** A front server whose every request is forwarded over a fake channel that answers `answer` and records what it got. */
  async function front(answer: string, m = meta('http')) {
    const got: string[] = [];
    const server = http.createServer((req, res) => {
      let sent = '';
      let answered = false;
      const stream: Duplex = new Duplex({
        read() {},
        write(c: Buffer, _e, cb) {
          sent += c.toString('latin1');
          cb();
          if (sent.includes('\r\n\r\n') && !answered) {
            answered = true;
            stream.push(answer);
            stream.push(null);
          }
        },
      });
      stream.on('close', () => got.push(sent));
      forwardHttp({
        req,
        res,
        stream,
        path: req.url ?? '/',
        scheme: 'http',
        meta: m,
        address: 'web.grp.acme',
        verifyTls: false,
        done: () => {},
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as AddressInfo).port;
    const send = (bytes: string) =>
      new Promise<string>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => s.write(bytes));
        let out = '';
        s.on('data', (c: Buffer) => {
          out += c.toString('latin1');
        });
        s.on('close', () => resolve(out));
      });
    return {
      got,
      send,
      close: () =>
        new Promise((r) => {
          server.closeAllConnections();
          server.close(r);
        }),
    };
  }

  it('refuses a Connection header naming Content-Length; sends explicit framing otherwise', async () => {
    const f = await front('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    try {
      const smuggle = 'DELETE /x HTTP/1.1\r\nHost: h\r\n\r\n';
      const bad = await f.send(
        `GET / HTTP/1.1\r\nHost: a\r\nConnection: close, content-length\r\nContent-Length: ${smuggle.length}\r\n\r\n${smuggle}`,
      );
      assert.match(bad, /^HTTP\/1\.1 400 /);
      assert.match(bad, /x-tether-error: BAD_FRAMING/);
      const good = await f.send(
        `GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: ${smuggle.length}\r\n\r\n${smuggle}`,
      );
      assert.match(good, /^HTTP\/1\.1 200 /);
      const upstream = f.got.at(-1) ?? '';
      assert.match(upstream, new RegExp(`\r\nContent-Length: ${smuggle.length}\r\n`));
      assert.equal(upstream.split('DELETE').length, 2, 'the body goes once, framed');
    } finally {
      await f.close();
    }
  });

  for (const [what, answer] of [
    ['status 999', 'HTTP/1.1 999 Odd\r\nContent-Length: 2\r\n\r\nhi'],
    ['a control character in the reason', 'HTTP/1.1 200 O\u0001K\r\nContent-Length: 2\r\n\r\nhi'],
  ]) {
    it(`a repository answering with ${what} gets the client a 502`, async () => {
      const f = await front(answer!);
      try {
        const r = await f.send('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
        assert.match(r, /^HTTP\/1\.1 502 /);
        assert.match(r, /x-tether-error: UPSTREAM_BAD_RESPONSE/);
        assert.match(
          await f.send('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'),
          /^HTTP\/1\.1 502 /,
        );
      } finally {
        await f.close();
      }
    });
  }

  it('metadata whose host cannot be a Host header gets the client a 502', async () => {
    const f = await front('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', {
      ...meta('http'),
      host: 'a\u0001b',
    });
    try {
      const r = await f.send('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
      assert.match(r, /^HTTP\/1\.1 502 /);
      assert.match(r, /x-tether-error: UPSTREAM_METADATA_INVALID/);
    } finally {
      await f.close();
    }
  });
});
