import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseProxyHeader } from './proxy-header.js';
import { buildProxyHeader } from './proxy-header-out.js';

test('the header a connector sends reads back as the caller (v1 and v2, IPv4, IPv6, mapped IPv4)', () => {
  const cases: Array<[string, string, string]> = [
    ['203.0.113.7', '10.0.0.5', '203.0.113.7'],
    ['::ffff:203.0.113.7', '10.0.0.5', '203.0.113.7'],
    ['2001:db8::7', '2001:db8::1', '2001:db8::7'],
    ['2001:db8::7', '10.0.0.5', '2001:db8::7'],
    ['203.0.113.7', '::1', '203.0.113.7'],
  ];
  for (const version of ['v1', 'v2'] as const) {
    for (const [src, dst, want] of cases) {
      const h = buildProxyHeader(version, { address: src, port: 51000 }, { address: dst, port: 8080 });
      const r = parseProxyHeader(h, 1536);
      assert.deepEqual(
        r,
        {
          kind: 'header',
          length: h.length,
          version: version === 'v1' ? 1 : 2,
          origin: { address: want, port: 51000 },
        },
        `${version} ${src} → ${dst}`,
      );
    }
  }
});

test('no usable source address: v1 UNKNOWN, v2 LOCAL', () => {
  assert.equal(
    buildProxyHeader('v1', { address: 'g/web', port: 0 }, { address: '10.0.0.5', port: 80 }).toString(),
    'PROXY UNKNOWN\r\n',
  );
  const v2 = buildProxyHeader('v2', { address: '', port: 0 }, { address: '10.0.0.5', port: 80 });
  assert.deepEqual(parseProxyHeader(v2, 1536), { kind: 'header', length: 16, version: 2 });
});
