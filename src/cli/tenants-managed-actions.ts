import type { Command } from 'commander';
import { assertTenantId, parseLabel } from '../core/ids.js';
import type { ManagedRepoView } from '../core/managed-repos.js';
import { TetherError } from '../errors/index.js';
import { type AdminTarget, adminRequest, findAdmin } from './admin-client.js';
import { printableLines, table } from './table.js';

/** `tether tenants repos add|remove|list`: managed repositories (the operator proposes, connectors decide). */

function out(s: string): void {
  const safe = printableLines(s);
  process.stdout.write(safe.endsWith('\n') ? safe : `${safe}\n`);
}

const target = (cmd: Command): AdminTarget =>
  findAdmin(process.env, cmd.optsWithGlobals().dataDir as string | undefined);

function checkLabel(label: string): void {
  if (!parseLabel(label)) {
    throw new TetherError(
      'USAGE',
      `invalid repository ${JSON.stringify(label)}: use <group>/<repo> (letters, digits, "_" or "-")`,
      { status: 400 },
    );
  }
}

/** One line per connector answer; "proposed" while none has answered. */
export function formatManaged(tenant: string, repos: ManagedRepoView[]): string {
  if (repos.length === 0) return `tenant ${tenant} has no managed repositories`;
  const rows: string[][] = [];
  for (const r of repos) {
    if (r.connectors.length === 0)
      rows.push([r.label, r.uri, '-', 'proposed (no connector has answered yet)']);
    for (const c of r.connectors) {
      const who = `${c.hostname ?? '?'} ${c.fingerprint}`;
      rows.push([r.label, r.uri, who, c.reason ? `${c.state}: ${c.reason}` : c.state]);
    }
  }
  return table(['REPOSITORY', 'URI', 'CONNECTOR', 'STATE'], rows);
}

export async function reposAdd(
  id: string,
  label: string,
  uri: string,
  o: { json?: boolean },
  cmd: Command,
): Promise<void> {
  assertTenantId(id);
  checkLabel(label);
  const r = await adminRequest<{ repository: ManagedRepoView; created: boolean }>(
    target(cmd),
    'POST',
    `/v1/tenants/${id}/managed-repositories`,
    { repository: label, uri },
  );
  if (o.json) return out(JSON.stringify(r, null, 2));
  out(
    `${r.created ? 'proposed' : 'changed'} ${label} → ${r.repository.uri} for the connectors of ${id}; each serves it only if its managed policy allows it (see "tether tenants repos list ${id}")`,
  );
}

export async function reposRemove(id: string, label: string, _o: unknown, cmd: Command): Promise<void> {
  assertTenantId(id);
  checkLabel(label);
  await adminRequest(target(cmd), 'DELETE', `/v1/tenants/${id}/managed-repositories/${label}`);
  out(`managed repository ${label} of ${id} removed`);
}

export async function reposList(id: string, o: { json?: boolean }, cmd: Command): Promise<void> {
  assertTenantId(id);
  const r = await adminRequest<{ tenant: string; repositories: ManagedRepoView[] }>(
    target(cmd),
    'GET',
    `/v1/tenants/${id}/managed-repositories`,
  );
  out(o.json ? JSON.stringify(r, null, 2) : formatManaged(id, r.repositories));
}
