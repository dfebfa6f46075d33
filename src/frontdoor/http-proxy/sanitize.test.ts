import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  clientErrorResponse,
  isRepeated,
  parseTarget,
  responseHeaders,
  upstreamHeaders,
} from './sanitize.js';

function pairs(flat: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!.toLowerCase(), flat[i + 1]!]);
  return out;
}

describe('http-proxy request sanitising', () => {
  it('accepts plain paths and splits the query', () => {
    assert.deepEqual(parseTarget('/v2/acme/app/manifests/1.0?x=1'), {
      path: '/v2/acme/app/manifests/1.0',
      query: '?x=1',
    });
    assert.deepEqual(parseTarget('/'), { path: '/', query: '' });
  });

  it('refuses targets that could slip past a prefix or a scope', () => {
    for (const bad of [
      'http://evil/x',
      '*',
      '/v2/acme/../other/manifests/1',
      '/v2/acme/%2e%2e/other',
      '/v2/./x',
      '/v2//other',
      '/v2/acme%2fapp',
      '/v2\\x',
      '/v2/%00',
    ]) {
      assert.equal(typeof parseTarget(bad), 'string', bad);
    }
  });

  it('finds repeated headers', () => {
    assert.ok(isRepeated(['Host', 'a', 'X', '1', 'host', 'b'], 'host'));
    assert.ok(!isRepeated(['Host', 'a', 'X', '1'], 'host'));
  });

  it('removes the caller credentials, cookies, hop-by-hop and forwarding headers; adds our own', () => {
    const raw = [
      'Host',
      'front.example.com',
      'Authorization',
      'Basic YWxpY2U6dG9rZW4=',
      'Proxy-Authorization',
      'Basic eDp5',
      'Cookie',
      'session=1',
      'X-Forwarded-For',
      '6.6.6.6',
      'X-Forwarded-Host',
      'evil',
      'Forwarded',
      'for=6.6.6.6',
      'X-Real-IP',
      '6.6.6.6',
      'Connection',
      'keep-alive, X-Drop-Me',
      'X-Drop-Me',
      '1',
      'Keep-Alive',
      'timeout=5',
      'TE',
      'trailers',
      'Upgrade',
      'websocket',
      'Expect',
      '100-continue',
      'Accept',
      'application/json',
      'X-Api-Key',
      'caller-copy',
    ];
    const h = pairs(
      upstreamHeaders(raw, {
        host: 'upstream:5000',
        clientAddress: '127.0.0.1',
        proto: 'https',
        forwardedHost: 'front.example.com',
        credential: ['x-api-key', 'injected'],
        framing: { kind: 'none' },
      }),
    );
    assert.deepEqual(h, [
      ['host', 'upstream:5000'],
      ['accept', 'application/json'],
      ['x-forwarded-for', '127.0.0.1'],
      ['x-forwarded-proto', 'https'],
      ['x-forwarded-host', 'front.example.com'],
      ['x-api-key', 'injected'],
    ]);
  });

  it('sets Transfer-Encoding again for a chunked body; asks for no close (tunnel channels are kept)', () => {
    const h = pairs(
      upstreamHeaders(['Transfer-Encoding', 'chunked'], {
        host: 'u',
        clientAddress: '::1',
        proto: 'http',
        forwardedHost: undefined,
        framing: { kind: 'chunked' },
      }),
    );
    assert.deepEqual(h.slice(-1), [['transfer-encoding', 'chunked']]);
    assert.equal(
      h.some(([k]) => k === 'connection'),
      false,
    );
  });

  it('leaves a chunked body unframed for a client that chunks it itself (undici), and drops the caller’s Transfer-Encoding', () => {
    const h = pairs(
      upstreamHeaders(['Transfer-Encoding', 'chunked', 'X-A', '1'], {
        host: 'u',
        clientAddress: '::1',
        proto: 'http',
        forwardedHost: undefined,
        framing: { kind: 'chunked' },
        clientChunks: true,
      }),
    );
    assert.equal(
      h.some(([k]) => k === 'transfer-encoding' || k === 'content-length'),
      false,
    );
    assert.ok(h.some(([k]) => k === 'x-a'));
  });

  it("sets Content-Length from the parsed framing, never the caller's, and a Connection header cannot remove it", () => {
    const h = pairs(
      upstreamHeaders(['Connection', 'content-length, transfer-encoding, host', 'Content-Length', '999'], {
        host: 'u',
        clientAddress: '::1',
        proto: 'http',
        forwardedHost: undefined,
        framing: { kind: 'length', length: 5 },
      }),
    );
    assert.deepEqual(
      h.filter(([k]) => ['content-length', 'transfer-encoding', 'host'].includes(k)),
      [
        ['host', 'u'],
        ['content-length', '5'],
      ],
    );
    const post = pairs(
      upstreamHeaders([], {
        host: 'u',
        clientAddress: '::1',
        proto: 'http',
        forwardedHost: undefined,
        framing: { kind: 'none' },
        method: 'POST',
      }),
    );
    assert.deepEqual(
      post.filter(([k]) => k === 'content-length'),
      [['content-length', '0']],
    );
  });

  it("an upstream's Connection header cannot remove the response's Content-Length", () => {
    const h = pairs(responseHeaders(['Connection', 'content-length', 'Content-Length', '2']));
    assert.deepEqual(h, [['content-length', '2']]);
  });

  it('drops hop-by-hop response headers', () => {
    const h = pairs(
      responseHeaders([
        'Content-Length',
        '2',
        'Connection',
        'close, X-Hop',
        'X-Hop',
        '1',
        'Keep-Alive',
        'x',
        'ETag',
        '"a"',
      ]),
    );
    assert.deepEqual(h, [
      ['content-length', '2'],
      ['etag', '"a"'],
    ]);
  });

  it('maps parser errors to 431, 408 and 400', () => {
    assert.equal(clientErrorResponse('HPE_HEADER_OVERFLOW', undefined).status, 431);
    assert.equal(clientErrorResponse('HPE_HEADERS_TIMEOUT', undefined).status, 408);
    const r = clientErrorResponse(
      'HPE_INVALID_TRANSFER_ENCODING',
      "Transfer-Encoding can't be present with Content-Length",
    );
    assert.equal(r.status, 400);
    assert.match(r.message, /Transfer-Encoding can't be present with Content-Length/);
  });
});
