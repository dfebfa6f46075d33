import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CidrSet, MAX_CIDRS, normalizeAddress, parseCidr, parseCidrList } from './cidr.js';

test('parseCidr: IPv4, IPv6, single addresses, IPv4-mapped IPv6', () => {
  assert.deepEqual(parseCidr('10.0.0.0/8'), { address: '10.0.0.0', prefix: 8, family: 'ipv4' });
  assert.deepEqual(parseCidr(' 192.0.2.7 '), { address: '192.0.2.7', prefix: 32, family: 'ipv4' });
  assert.deepEqual(parseCidr('2001:DB8::/32'), { address: '2001:db8::', prefix: 32, family: 'ipv6' });
  assert.deepEqual(parseCidr('::1'), { address: '::1', prefix: 128, family: 'ipv6' });
  assert.deepEqual(parseCidr('::ffff:10.1.2.3/32'), { address: '10.1.2.3', prefix: 32, family: 'ipv4' });
});

test('parseCidr: a bad block is refused with a message that names it', () => {
  const cases: Array<[string, RegExp]> = [
    ['10.0.0.300/8', /invalid address block "10\.0\.0\.300\/8": not an IPv4 or IPv6 address/],
    [
      '10.0.0.0/33',
      /invalid address block "10\.0\.0\.0\/33": the prefix length must be a whole number from 0 to 32/,
    ],
    ['2001:db8::/129', /from 0 to 128/],
    ['10.0.0.0/', /prefix length/],
    ['10.0.0.0/8/8', /prefix length/],
    ['example.com', /"example\.com": not an IPv4 or IPv6 address/],
    ['', /invalid address block "": not an IPv4/],
    ['10.0.0.0/-1', /prefix length/],
  ];
  for (const [text, re] of cases) {
    assert.throws(
      () => parseCidr(text),
      (e: Error & { code?: string }) => e.code === 'INVALID_CIDR' && re.test(e.message),
      text,
    );
  }
});

test('parseCidrList: bounded, de-duplicated, canonical', () => {
  assert.deepEqual(parseCidrList(['10.0.0.0/8', '10.0.0.0/8', '::1'], 'allow_from'), [
    '10.0.0.0/8',
    '::1/128',
  ]);
  const many = Array.from({ length: MAX_CIDRS + 1 }, (_, i) => `10.0.${i}.0/24`);
  assert.throws(
    () => parseCidrList(many, 'allow_from'),
    /allow_from holds 65 address blocks; at most 64 are allowed/,
  );
  assert.equal(parseCidrList(many.slice(0, MAX_CIDRS), 'allow_from').length, MAX_CIDRS);
});

test('CidrSet: matches IPv4, IPv6 and IPv4-mapped IPv6 callers; nothing else', () => {
  const set = new CidrSet(['203.0.113.0/24', '2001:db8::/32']);
  assert.equal(set.has('203.0.113.9'), true);
  assert.equal(set.has('::ffff:203.0.113.9'), true, 'a dual-stack listener reports IPv4 as mapped IPv6');
  assert.equal(set.has('203.0.114.1'), false);
  assert.equal(set.has('2001:db8:1::5'), true);
  assert.equal(set.has('2001:db9::5'), false);
  assert.equal(set.has(undefined), false);
  assert.equal(set.has('not an address'), false);
  assert.equal(normalizeAddress('::FFFF:10.0.0.1'), '10.0.0.1');
});
