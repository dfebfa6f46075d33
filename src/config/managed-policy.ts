/**
 * `managed:` in connect.yaml: what the operator may add to this connector from the gateway (the
 * customer's policy). `off` (the default) means nothing; otherwise a list of rules, each naming
 * where (cidr and/or host patterns), on which ports and for which services:
 *
 *   managed:
 *     allow:
 *       - { cidr: 10.0.0.0/24, ports: "445,139", services: [smb] }
 *       - { host: "*.corp.example", ports: "443", services: [webdav, cmis] }
 *     max_entries: 64
 *
 * This file only reads and validates the policy; connector/managed-policy.ts applies it.
 */
import type { FieldProblem } from '../errors/index.js';
import { type Cidr, parseCidr, parseIp } from './ip-cidr.js';
import { SERVICE_NAMES, SERVICES } from './uri.js';

export const DEFAULT_MAX_MANAGED = 64;
const MAX_RULES = 256;

export interface ManagedRule {
  /** Position in managed.allow, for messages. */
  index: number;
  cidrs: readonly Cidr[];
  /** Lower-case host patterns: "files.corp.example" or "*.corp.example" (any name below it). */
  hosts: readonly string[];
  /** Inclusive port ranges. */
  ports: readonly (readonly [number, number])[];
  /** Allowed services; null = any. */
  services: readonly string[] | null;
}

export interface ManagedPolicy {
  rules: readonly ManagedRule[];
  /** Managed repositories this connector serves at most. */
  maxEntries: number;
}

const HOST_PATTERN =
  /^(\*\.)?(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}))*$/;

function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [v];
}

function parsePorts(v: unknown, path: string, problems: FieldProblem[]): Array<[number, number]> {
  const text = typeof v === 'number' ? String(v) : typeof v === 'string' ? v : undefined;
  const out: Array<[number, number]> = [];
  const bad = (why: string) => {
    problems.push({ path, message: `${why} (use e.g. "445,139" or "8000-8100")` });
    return [];
  };
  if (text === undefined || text.trim() === '') return bad('is required');
  for (const part of text.split(',')) {
    const m = /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$/.exec(part);
    if (!m) return bad(`"${part.trim()}" is not a port or a range`);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (lo < 1 || hi > 65535 || lo > hi) return bad(`"${part.trim()}" is out of range (1-65535, low-high)`);
    out.push([lo, hi]);
  }
  return out;
}

function parseRule(raw: unknown, index: number, problems: FieldProblem[]): ManagedRule | undefined {
  const path = `managed.allow[${index}]`;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    problems.push({ path, message: 'must be a mapping: { cidr | host, ports, services }' });
    return undefined;
  }
  const r = raw as Record<string, unknown>;
  const unknown = Object.keys(r).filter((k) => !['cidr', 'host', 'ports', 'services'].includes(k));
  if (unknown.length > 0) {
    problems.push({
      path,
      message: `unknown key "${unknown[0]}" (a rule takes cidr, host, ports, services)`,
    });
    return undefined;
  }
  const before = problems.length;
  if (r.cidr === undefined && r.host === undefined) {
    problems.push({
      path,
      message: 'needs cidr or host (or both): where the operator may point this connector',
    });
  }
  const cidrs: Cidr[] = [];
  if (r.cidr !== undefined) {
    for (const c of list(r.cidr)) {
      const parsed = typeof c === 'string' ? parseCidr(c) : 'must be a CIDR block such as "10.0.0.0/24"';
      if (typeof parsed === 'string') problems.push({ path: `${path}.cidr`, message: parsed });
      else cidrs.push(parsed);
    }
  }
  const hosts: string[] = [];
  if (r.host !== undefined) {
    for (const h of list(r.host)) {
      const text = typeof h === 'string' ? h.trim().toLowerCase().replace(/\.$/, '') : '';
      if (parseIp(text) !== undefined || text.includes(':')) {
        problems.push({ path: `${path}.host`, message: `"${text}" is an address: put addresses in cidr` });
      } else if (!HOST_PATTERN.test(text)) {
        problems.push({
          path: `${path}.host`,
          message: `${JSON.stringify(h)} is not a host name or pattern (use "files.corp.example" or "*.corp.example")`,
        });
      } else hosts.push(text);
    }
  }
  const ports = parsePorts(r.ports, `${path}.ports`, problems);
  let services: string[] | null = null;
  if (r.services !== undefined) {
    services = [];
    for (const s of list(r.services)) {
      if (typeof s !== 'string' || !Object.hasOwn(SERVICES, s)) {
        problems.push({
          path: `${path}.services`,
          message: `unknown service ${JSON.stringify(s)}: use ${SERVICE_NAMES.join(', ')}`,
        });
      } else services.push(s);
    }
  }
  if (problems.length > before) return undefined;
  return { index, cidrs, hosts, ports, services };
}

/** Reads `managed:`; null = off. Problems are added to `problems`. */
export function parseManagedPolicy(value: unknown, problems: FieldProblem[]): ManagedPolicy | null {
  if (value === undefined || value === null || value === false || value === 'off') return null;
  if (typeof value !== 'object' || Array.isArray(value)) {
    problems.push({
      path: 'managed',
      message: 'use "off" or { allow: [ { cidr | host, ports, services } ] }',
    });
    return null;
  }
  const m = value as Record<string, unknown>;
  const unknown = Object.keys(m).filter((k) => k !== 'allow' && k !== 'max_entries');
  if (unknown.length > 0) {
    problems.push({ path: 'managed', message: `unknown key "${unknown[0]}" (use allow, max_entries)` });
    return null;
  }
  if (!Array.isArray(m.allow) || m.allow.length === 0) {
    problems.push({
      path: 'managed.allow',
      message:
        'needs a list of rules ({ cidr | host, ports, services }); write "managed: off" to allow nothing',
    });
    return null;
  }
  if (m.allow.length > MAX_RULES) {
    problems.push({ path: 'managed.allow', message: `at most ${MAX_RULES} rules` });
    return null;
  }
  let maxEntries = DEFAULT_MAX_MANAGED;
  if (m.max_entries !== undefined) {
    if (
      typeof m.max_entries !== 'number' ||
      !Number.isInteger(m.max_entries) ||
      m.max_entries < 1 ||
      m.max_entries > 1000
    ) {
      problems.push({ path: 'managed.max_entries', message: 'must be a whole number from 1 to 1000' });
      return null;
    }
    maxEntries = m.max_entries;
  }
  const rules = m.allow.map((r, i) => parseRule(r, i, problems));
  if (rules.some((r) => r === undefined)) return null;
  return { rules: rules as ManagedRule[], maxEntries };
}

/** The policy as `tether connector config` shows it (the effective rules, normalised). */
export function managedText(p: ManagedPolicy): Record<string, unknown> {
  return {
    allow: p.rules.map((r) => ({
      ...(r.cidrs.length > 0 ? { cidr: r.cidrs.map((c) => c.text) } : {}),
      ...(r.hosts.length > 0 ? { host: [...r.hosts] } : {}),
      ports: r.ports.map(([lo, hi]) => (lo === hi ? String(lo) : `${lo}-${hi}`)).join(','),
      services: r.services === null ? 'any' : [...r.services],
    })),
    max_entries: p.maxEntries,
  };
}
