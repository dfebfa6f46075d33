import { isValidName, TENANT_ID } from '../../core/ids.js';

/** A repository named from outside: `<repo>.<group>.<tenant>[:port]`. */
export interface RepoAuthority {
  repo: string;
  group: string;
  tenant: string;
  /** The port the client named; any port is accepted and ignored. */
  port: number | null;
}

export type AuthorityResult = { ok: true; value: RepoAuthority } | { ok: false; reason: string };

/** Longest authority looked at: three 63-character labels, two dots, ":65535", with room to spare. */
export const MAX_AUTHORITY = 300;

const FORM = 'use <repo>.<group>.<tenant>, e.g. web.grp.acme:443';

const fail = (reason: string): AuthorityResult => ({ ok: false, reason });

/**
 * Parses the authority of a CONNECT request (or the host of an absolute-form URL) into the
 * repository it names. Pure; never throws. The reason of a failure is safe to show a client.
 */
export function parseRepoAuthority(input: string): AuthorityResult {
  if (typeof input !== 'string' || input.length === 0) return fail(`empty authority: ${FORM}`);
  if (input.length > MAX_AUTHORITY) return fail(`authority longer than ${MAX_AUTHORITY} characters`);
  if (!/^[\x21-\x7e]+$/.test(input))
    return fail(`authority has non-ASCII, space or control characters: ${FORM}`);
  if (input.includes('@')) return fail('authority must not carry user information');
  if (input.startsWith('[')) return fail(`an IP address is not a repository: ${FORM}`);

  let host = input;
  let port: number | null = null;
  const colon = input.lastIndexOf(':');
  if (colon >= 0) {
    host = input.slice(0, colon);
    const p = input.slice(colon + 1);
    if (!/^\d{1,5}$/.test(p) || Number(p) < 1 || Number(p) > 65535)
      return fail(`invalid port ${JSON.stringify(p)} (use 1-65535)`);
    port = Number(p);
    if (host.includes(':')) return fail(`too many ":" in authority: ${FORM}`);
  }

  const parts = host.split('.');
  if (parts.length < 3) return fail(`missing parts in "${host}": ${FORM}`);
  if (parts.length > 3) return fail(`too many dots in "${host}": ${FORM}`);
  const [repo, group, tenantRaw] = parts as [string, string, string];
  for (const [what, label] of [
    ['repository', repo],
    ['group', group],
    ['tenant', tenantRaw],
  ] as const) {
    if (label.length === 0) return fail(`empty ${what} in "${host}": ${FORM}`);
    if (label.length > 63) return fail(`${what} name longer than 63 characters`);
  }
  if (!isValidName(repo))
    return fail(
      `invalid repository name "${repo}" (letters, digits, "_" or "-", starting with a letter or digit)`,
    );
  if (!isValidName(group))
    return fail(
      `invalid group name "${group}" (letters, digits, "_" or "-", starting with a letter or digit)`,
    );
  // Host names are case-insensitive and tenant ids are lower case, so "ACME" names "acme".
  const tenant = tenantRaw.toLowerCase();
  if (!TENANT_ID.test(tenant))
    return fail(`invalid tenant id "${tenantRaw}" (a-z, 0-9, "_" or "-", starting with a letter or digit)`);
  return { ok: true, value: { repo, group, tenant, port } };
}

/** `web.grp.acme`: how a repository is addressed from outside. */
export function repoAddress(a: { repo: string; group: string; tenant: string }): string {
  return `${a.repo}.${a.group}.${a.tenant}`;
}
