/**
 * IP addresses and CIDR blocks as numbers: enough arithmetic to say whether an address lies in a
 * block, in one family only. An IPv4 block never covers an IPv6 address, not even the IPv6 forms of
 * its own addresses (`::ffff:10.0.0.5`): node's BlockList would, which is why this is not it.
 */
import { isIP } from 'node:net';

export interface Cidr {
  family: 4 | 6;
  /** The network number (host bits cleared). */
  network: bigint;
  prefix: number;
  /** As written, normalised ("10.0.0.0/24"). */
  text: string;
}

function v4ToBig(ip: string): bigint {
  return ip.split('.').reduce((acc, p) => (acc << 8n) | BigInt(Number(p)), 0n);
}

function v6ToBig(ip: string): bigint {
  // a trailing dotted quad ("::ffff:10.0.0.5") becomes its two hex groups
  const text = ip.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_m, a, b, c, d) =>
    [((Number(a) << 8) | Number(b)).toString(16), ((Number(c) << 8) | Number(d)).toString(16)].join(':'),
  );
  const parse = (s: string | undefined) => (s ? s.split(':').filter((x) => x !== '') : []);
  const [headText, restText] = text.includes('::') ? text.split('::') : [text, undefined];
  const head = parse(headText).map((h) => BigInt(Number.parseInt(h, 16)));
  const rest = parse(restText).map((h) => BigInt(Number.parseInt(h, 16)));
  const groups =
    restText === undefined
      ? head
      : [...head, ...new Array<bigint>(8 - head.length - rest.length).fill(0n), ...rest];
  return groups.reduce((acc, g) => (acc << 16n) | g, 0n);
}

/** An address as (family, number); undefined when it is not an IP literal (zone ids refused). */
export function parseIp(ip: string): { family: 4 | 6; value: bigint } | undefined {
  if (ip.includes('%')) return undefined;
  const fam = isIP(ip);
  if (fam === 4) return { family: 4, value: v4ToBig(ip) };
  if (fam === 6) return { family: 6, value: v6ToBig(ip) };
  return undefined;
}

/** "10.0.0.0/24", "fd00::/8", or a bare address (a /32 or /128); a string result says what is wrong. */
export function parseCidr(text: string): Cidr | string {
  const s = text.trim();
  const slash = s.indexOf('/');
  const addr = slash < 0 ? s : s.slice(0, slash);
  const ip = parseIp(addr);
  if (!ip) return `"${s}" is not a CIDR block (use e.g. "10.0.0.0/24" or "fd00::/64")`;
  const max = ip.family === 4 ? 32 : 128;
  const pfx = slash < 0 ? String(max) : s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(pfx) || Number(pfx) > max) {
    return `"${s}": the prefix length must be 0-${max}`;
  }
  const prefix = Number(pfx);
  const bits = BigInt(max);
  const mask = prefix === 0 ? 0n : ((1n << BigInt(prefix)) - 1n) << (bits - BigInt(prefix));
  if ((ip.value & mask) !== ip.value) {
    return `"${s}" has host bits set (did you mean ${formatIp(ip.family, ip.value & mask)}/${prefix}?)`;
  }
  return { family: ip.family, network: ip.value & mask, prefix, text: `${addr.toLowerCase()}/${prefix}` };
}

export function inCidr(ip: { family: 4 | 6; value: bigint }, c: Cidr): boolean {
  if (ip.family !== c.family) return false;
  const bits = c.family === 4 ? 32n : 128n;
  return ip.value >> (bits - BigInt(c.prefix)) === c.network >> (bits - BigInt(c.prefix));
}

/** Whether block `inner` lies inside block `outer` (same family). */
export function cidrWithin(inner: Cidr, outer: Cidr): boolean {
  return (
    inner.family === outer.family &&
    inner.prefix >= outer.prefix &&
    inCidr({ family: inner.family, value: inner.network }, outer)
  );
}

export function formatIp(family: 4 | 6, v: bigint): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 0xffn)).join('.');
  const groups: string[] = [];
  for (let s = 112n; s >= 0n; s -= 16n) groups.push(((v >> s) & 0xffffn).toString(16));
  return groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
}

const block = (t: string): Cidr => parseCidr(t) as Cidr;

/** Addresses a connector never dials for a managed repository, whatever the policy says. */
export const NEVER = [
  block('0.0.0.0/8'),
  block('224.0.0.0/4'),
  block('240.0.0.0/4'),
  block('::/128'),
  block('ff00::/8'),
];
/** Addresses only a block inside the same range can allow (a policy must name them on purpose). */
export const SPECIAL: ReadonlyArray<{ cidr: Cidr; what: string; example: string }> = [
  { cidr: block('127.0.0.0/8'), what: 'a loopback address of the connector', example: '127.0.0.1/32' },
  { cidr: block('::1/128'), what: 'the loopback address of the connector', example: '::1/128' },
  { cidr: block('169.254.0.0/16'), what: 'a link-local address', example: '169.254.10.0/24' },
  { cidr: block('fe80::/10'), what: 'a link-local address', example: 'fe80::/64' },
];
/** IPv6 blocks that carry an IPv4 address (mapped, compatible, NAT64, 6to4). */
export const V4_IN_V6: ReadonlyArray<{ cidr: Cidr; at: bigint }> = [
  { cidr: block('::ffff:0:0/96'), at: 0n },
  { cidr: block('::/96'), at: 0n },
  { cidr: block('64:ff9b::/96'), at: 0n },
  { cidr: block('2002::/16'), at: 80n },
];

/** The IPv4 address an IPv6 address carries, if it is one of the IPv6 forms of IPv4. */
export function embeddedV4(ip: { family: 4 | 6; value: bigint }): bigint | undefined {
  if (ip.family !== 6) return undefined;
  if (ip.value <= 1n) return undefined; // :: and ::1 are themselves, not IPv4 forms
  for (const f of V4_IN_V6) {
    if (inCidr(ip, f.cidr)) return (ip.value >> f.at) & 0xffffffffn;
  }
  return undefined;
}
