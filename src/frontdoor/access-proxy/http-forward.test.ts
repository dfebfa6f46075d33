import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { endToEndHeaders, httpSchemeOf } from './http-forward.js';

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
