import net from 'node:net';
import { TetherError } from '../errors/index.js';

/**
 * Source-address lists (CIDR blocks, IPv4 and IPv6): parsing with a message that names the bad
 * value, the bound on their length, and matching with node's net.BlockList. Used by the tenant
 * allowlists (`allow_from`, `tunnel_from`) and by `trusted_proxies` of every PROXY-protocol
 * listener.
 */

/** Most CIDR blocks one list may hold (an allowlist or `trusted_proxies`). */
export const MAX_CIDRS = 64;

export interface Cidr {
  /** The network address, normalised ("10.0.0.0", "2001:db8::"). */
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/** "::ffff:10.0.0.1" → "10.0.0.1"; IPv6 lower-cased; undefined → "unknown". */
export function normalizeAddress(ip: string | undefined): string {
  if (!ip) return 'unknown';
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m ? m[1]! : ip.toLowerCase();
}

function invalid(text: string, why: string): TetherError {
  return new TetherError(
    'INVALID_CIDR',
    `invalid address block ${JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text)}: ${why}`,
    { status: 400 },
  );
}

/**
 * Parses "10.0.0.0/8", "2001:db8::/32", or a single address ("192.0.2.7" = /32, "::1" = /128).
 * Throws INVALID_CIDR naming the value.
 */
export function parseCidr(text: string): Cidr {
  if (typeof text !== 'string') throw invalid(String(text), 'not text');
  const t = text.trim();
  const slash = t.indexOf('/');
  const addr = normalizeAddress(slash === -1 ? t : t.slice(0, slash));
  const v = net.isIP(addr);
  if (v === 0) throw invalid(text, 'not an IPv4 or IPv6 address (use e.g. 203.0.113.0/24 or 2001:db8::/32)');
  const family = v === 4 ? 'ipv4' : 'ipv6';
  const max = v === 4 ? 32 : 128;
  let prefix = max;
  if (slash !== -1) {
    const p = t.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) {
      throw invalid(text, `the prefix length must be a whole number from 0 to ${max}`);
    }
    prefix = Number(p);
  }
  return { address: addr, prefix, family };
}

/** "10.0.0.0/8" (the canonical text of a block). */
export function cidrText(c: Cidr): string {
  return `${c.address}/${c.prefix}`;
}

/**
 * Parses a list (at most MAX_CIDRS blocks); returns the canonical texts, duplicates dropped.
 * `what` names the list in messages ("allow_from").
 */
export function parseCidrList(list: readonly string[], what: string): string[] {
  if (!Array.isArray(list)) {
    throw new TetherError('INVALID_CIDR', `${what} must be a list of address blocks`, { status: 400 });
  }
  if (list.length > MAX_CIDRS) {
    throw new TetherError(
      'INVALID_CIDR',
      `${what} holds ${list.length} address blocks; at most ${MAX_CIDRS} are allowed (use wider blocks)`,
      { status: 400 },
    );
  }
  const out = new Set<string>();
  for (const item of list) out.add(cidrText(parseCidr(item)));
  return [...out];
}

/** A set of CIDR blocks; `has` answers for one address (IPv4-mapped IPv6 counts as IPv4). */
export class CidrSet {
  private readonly list = new net.BlockList();
  readonly texts: readonly string[];

  constructor(blocks: readonly string[]) {
    const parsed = blocks.map(parseCidr);
    for (const c of parsed) this.list.addSubnet(c.address, c.prefix, c.family);
    this.texts = parsed.map(cidrText);
  }

  get empty(): boolean {
    return this.texts.length === 0;
  }

  has(ip: string | undefined): boolean {
    const a = normalizeAddress(ip);
    const v = net.isIP(a);
    if (v === 0) return false;
    return this.list.check(a, v === 4 ? 'ipv4' : 'ipv6');
  }
}
