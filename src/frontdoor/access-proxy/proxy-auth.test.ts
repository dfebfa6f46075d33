import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { basicAuthorization, parseProxyAuthorization } from './proxy-auth.js';

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

describe('parseProxyAuthorization', () => {
  it('decodes Basic <tenant>:<key>', () => {
    assert.deepEqual(parseProxyAuthorization(`Basic ${b64('acme:k3y-_x')}`), {
      ok: true,
      value: { user: 'acme', password: 'k3y-_x' },
    });
  });

  it('accepts any case of the scheme, extra blanks and a key containing ":"', () => {
    assert.deepEqual(parseProxyAuthorization(`bAsIc   ${b64('acme:a:b')}  `), {
      ok: true,
      value: { user: 'acme', password: 'a:b' },
    });
  });

  it('accepts base64 without padding', () => {
    assert.deepEqual(parseProxyAuthorization(`Basic ${b64('acme:k').replace(/=+$/, '')}`), {
      ok: true,
      value: { user: 'acme', password: 'k' },
    });
  });

  it('round-trips what basicAuthorization builds', () => {
    assert.deepEqual(parseProxyAuthorization(basicAuthorization('acme', 'xyz')), {
      ok: true,
      value: { user: 'acme', password: 'xyz' },
    });
  });

  it('reports a missing header as missing', () => {
    for (const h of [undefined, '', '   ']) {
      const r = parseProxyAuthorization(h);
      assert.equal(r.ok, false);
      if (!r.ok) assert.equal(r.kind, 'missing');
    }
  });

  it('reports other schemes as scheme', () => {
    for (const h of ['Bearer abc', 'Digest username="acme"', 'Negotiate', 'NTLM TlRMTVNTUAAB']) {
      const r = parseProxyAuthorization(h);
      assert.equal(r.ok, false, h);
      if (!r.ok) {
        assert.equal(r.kind, 'scheme', h);
        assert.match(r.reason, /only Basic/);
      }
    }
  });

  it('reports malformed Basic credentials', () => {
    const cases: Array<[string | string[], RegExp]> = [
      ['Basic', /empty/],
      ['Basic ', /empty/],
      ['Basic !!!!', /not valid base64/],
      ['Basic YWJj ZGVm', /not valid base64/],
      ['Basic YW=jZA==', /not valid base64/],
      ['Basic YWJjZ', /not valid base64/],
      ['Basic YWJjZA=', /not valid base64/],
      ['Basic YWJjZA===', /not valid base64/],
      [`Basic ${b64('acme-no-colon')}`, /<tenant>:<group key>/],
      [`Basic ${Buffer.from([0x61, 0x3a, 0xff, 0xfe]).toString('base64')}`, /not UTF-8/],
      [`Basic ${b64('acme:k\r\nX-Evil: 1')}`, /control characters/],
      [`Basic ${'A'.repeat(2000)}`, /too long/],
      ['B@sic abc', /malformed/],
      [['Basic a', 'Basic b'], /more than one/],
    ];
    for (const [h, re] of cases) {
      const r = parseProxyAuthorization(h);
      assert.equal(r.ok, false, String(h));
      if (!r.ok) {
        assert.equal(r.kind, 'malformed', String(h));
        assert.match(r.reason, re, String(h));
      }
    }
  });
});
