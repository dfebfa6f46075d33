/**
 * The customer's policy applied: may the gateway make this connector dial this target?
 *
 * A target passes when one rule of `managed.allow` allows its service and its port, and its host:
 *  - an IP literal must lie in one of that rule's CIDR blocks (an IPv4 block never covers an
 *    IPv6 form of one of its addresses, such as ::ffff:10.0.0.5);
 *  - a host name must match one of the rule's host patterns (a rule without host patterns takes
 *    any name), and what it resolves to must lie in the rule's blocks, or when the rule has none,
 *    in the blocks of the whole policy (when it has any). Names are resolved again at every dial
 *    and the connector dials the address it checked, never the name (no DNS rebinding).
 * Whatever the rules say, 0.0.0.0/8, ::, multicast and broadcast are never dialled, and loopback
 * and link-local addresses only when a block inside those ranges names them on purpose.
 */
import type { LookupAddress } from 'node:dns';
import { cidrWithin, embeddedV4, formatIp, inCidr, NEVER, parseIp, SPECIAL } from '../config/ip-cidr.js';
import type { ManagedPolicy, ManagedRule } from '../config/managed-policy.js';
import { destinationOf, type RepositoryTarget } from '../config/uri.js';

export type Lookup = (host: string) => Promise<LookupAddress[]>;

export type PolicyVerdict = { ok: true } | { ok: false; reason: string };
export type DialVerdict = { ok: true; address: string } | { ok: false; reason: string };

type Target = Pick<RepositoryTarget, 'service' | 'host' | 'port'>;

const OFF = 'managed repositories are off on this connector (connect.yaml has no managed.allow)';

function portAllowed(r: ManagedRule, port: number): boolean {
  return r.ports.some(([lo, hi]) => port >= lo && port <= hi);
}

function hostMatches(pattern: string, host: string): boolean {
  if (pattern.startsWith('*.')) return host.endsWith(pattern.slice(1)) && host.length > pattern.length - 1;
  return host === pattern;
}

function outside(t: Target, why: string): { ok: false; reason: string } {
  return { ok: false, reason: `${destinationOf(t)} is outside managed.allow: ${why}` };
}

/** Rules that allow the target's service and port, or why there are none. */
function rulesFor(policy: ManagedPolicy, t: Target): ManagedRule[] | { ok: false; reason: string } {
  const bySvc = policy.rules.filter((r) => r.services === null || r.services.includes(t.service));
  if (bySvc.length === 0) return outside(t, `no rule allows the service ${t.service}`);
  const byPort = bySvc.filter((r) => portAllowed(r, t.port));
  if (byPort.length === 0) return outside(t, `no rule allows port ${t.port} for ${t.service}`);
  return byPort;
}

/** Why one address may not be dialled under these rules; undefined when it may. */
export function addressProblem(
  policy: ManagedPolicy,
  rules: readonly ManagedRule[],
  address: string,
  byName: boolean,
): string | undefined {
  const ip = parseIp(address);
  if (!ip) return `${address} is not an IP address`;
  const shown = formatIp(ip.family, ip.value);
  if (NEVER.some((c) => inCidr(ip, c)))
    return `${shown} is never dialled (unspecified, multicast or broadcast)`;
  const v4 = embeddedV4(ip);
  if (v4 !== undefined && NEVER.some((c) => inCidr({ family: 4, value: v4 }, c))) {
    return `${shown} is never dialled (an IPv6 form of ${formatIp(4, v4)})`;
  }
  const blocks = rules.flatMap((r) =>
    r.cidrs.length > 0 ? r.cidrs : byName ? policy.rules.flatMap((x) => x.cidrs) : [],
  );
  const policyHasBlocks = policy.rules.some((r) => r.cidrs.length > 0);
  const hostOnly = byName && rules.some((r) => r.cidrs.length === 0) && !policyHasBlocks;
  const covering = blocks.filter((c) => inCidr(ip, c));
  if (covering.length === 0 && !hostOnly) {
    if (v4 !== undefined) {
      return `${shown} is an IPv6 form of ${formatIp(4, v4)}; IPv4 blocks do not cover it (allow it with an IPv6 block such as ::ffff:${formatIp(4, v4)}/128)`;
    }
    const list = [...new Set(blocks.map((c) => c.text))];
    return `${shown} is in none of the allowed blocks${list.length > 0 ? ` (${list.join(', ')})` : ''}`;
  }
  // Loopback and link-local: only a block inside that range allows them (0.0.0.0/0 does not).
  const v4ip = v4 === undefined ? undefined : { family: 4 as const, value: v4 };
  for (const s of SPECIAL) {
    const hit = inCidr(ip, s.cidr) || (v4ip !== undefined && inCidr(v4ip, s.cidr));
    if (!hit) continue;
    if (!covering.some((c) => cidrWithin(c, s.cidr))) {
      return `${shown} is ${s.what}, allowed only by a block inside ${s.cidr.text} (e.g. ${s.example})`;
    }
  }
  return undefined;
}

/** The check that needs no name resolution: service, port, host pattern or address block. */
export function checkTarget(policy: ManagedPolicy | null | undefined, t: Target): PolicyVerdict {
  if (!policy) return { ok: false, reason: `${destinationOf(t)}: ${OFF}` };
  const rules = rulesFor(policy, t);
  if (!Array.isArray(rules)) return rules;
  if (parseIp(t.host) || t.host.includes(':')) {
    const why = addressProblem(policy, rules, t.host, false);
    return why ? outside(t, why) : { ok: true };
  }
  const named = rules.filter((r) => r.hosts.length === 0 || r.hosts.some((p) => hostMatches(p, t.host)));
  if (named.length === 0) {
    const patterns = [...new Set(rules.flatMap((r) => r.hosts))];
    return outside(
      t,
      `the host ${t.host} matches none of the allowed host patterns (${patterns.join(', ')})`,
    );
  }
  return { ok: true };
}

/**
 * Picks the address to dial: the target passes checkTarget, and (for a name) one address it
 * resolves to right now passes the blocks. The caller dials exactly that address.
 */
export async function resolveTarget(
  policy: ManagedPolicy | null | undefined,
  t: Target,
  lookup: Lookup,
): Promise<DialVerdict> {
  const first = checkTarget(policy, t);
  if (!first.ok) return first;
  const rules = rulesFor(policy!, t) as ManagedRule[];
  if (parseIp(t.host)) return { ok: true, address: t.host };
  const named = rules.filter((r) => r.hosts.length === 0 || r.hosts.some((p) => hostMatches(p, t.host)));
  let addrs: LookupAddress[];
  try {
    addrs = await lookup(t.host);
  } catch (e) {
    return {
      ok: false,
      reason: `${destinationOf(t)}: cannot resolve ${t.host}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    };
  }
  if (addrs.length === 0)
    return { ok: false, reason: `${destinationOf(t)}: ${t.host} resolves to no address` };
  const problems: string[] = [];
  for (const a of addrs) {
    const why = addressProblem(policy!, named, a.address, true);
    if (!why) return { ok: true, address: a.address };
    problems.push(why);
  }
  return outside(t, `${t.host} resolves to ${addrs.map((a) => a.address).join(', ')}: ${problems[0]}`);
}
