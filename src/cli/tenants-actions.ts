import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { TenantView } from '../admin/schemas.js';
import { assertTenantId, isValidLabel } from '../core/ids.js';
import { parseBalance, parseMaxConnections, parseRate, parseTraffic } from '../core/limits.js';
import { TetherError } from '../errors/index.js';
import { type AdminTarget, adminRequest, findAdmin } from './admin-client.js';
import { printableLines } from './table.js';
import { formatRepositories, formatTenants, limitsText, type RepoListing } from './tenants-format.js';

/** The actions of `tether tenants …` (loaded only when one of them runs; see tenants.ts). */

/** core/tenants.ts and its ssh2 key parser load only for the commands that need them. */
async function parseQuota(text: string): Promise<number> {
  return (await import('../core/tenants.js')).parseQuota(text);
}

/** Everything printed goes through `printableLines`: values from the gateway may hold escapes. */
function out(s: string): void {
  const safe = printableLines(s);
  process.stdout.write(safe.endsWith('\n') ? safe : `${safe}\n`);
}

function err(s: string): void {
  process.stderr.write(printableLines(s));
}

function readPubKeyFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'file not found'
        : code === 'EACCES'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'it is a directory'
            : String(code ?? e);
    throw new TetherError('PUBLIC_KEY_UNREADABLE', `cannot read public key file ${file}: ${why}`, {
      status: 400,
    });
  }
}

interface ChangeOptions {
  bandwidth?: string;
  bandwidthUp?: string;
  bandwidthDown?: string;
  maxConnections?: string;
  traffic?: string;
  balance?: string;
  allowFrom?: string;
  tunnelFrom?: string;
  repo?: string;
  json?: boolean;
}

/**
 * "--allow-from 10.0.0.0/8,2001:db8::/32" → the list (checked here first); "off" or "" → null.
 * The parser loads only when the option is given (the CLI loads what a command uses).
 */
async function cidrOption(text: string | undefined, what: string): Promise<string[] | null | undefined> {
  if (text === undefined) return undefined;
  const t = text.trim();
  if (t === '' || t.toLowerCase() === 'off') return null;
  const { parseCidrList } = await import('../config/cidr.js');
  return parseCidrList(
    t.split(',').map((x) => x.trim()),
    what,
  );
}

/** The limit options as PATCH fields, checked here first with the gateway's own parsers. */
async function limitsBody(o: ChangeOptions): Promise<Record<string, unknown>> {
  const body: Record<string, unknown> = {};
  if (o.bandwidth !== undefined && (o.bandwidthUp !== undefined || o.bandwidthDown !== undefined)) {
    throw new TetherError(
      'USAGE',
      'give either --bandwidth (both directions) or --bandwidth-up/--bandwidth-down',
      {
        status: 400,
      },
    );
  }
  if (o.bandwidth !== undefined) body.bandwidth = parseRate(o.bandwidth, 'bandwidth');
  if (o.bandwidthUp !== undefined) body.bandwidth_up = parseRate(o.bandwidthUp, 'bandwidth-up');
  if (o.bandwidthDown !== undefined) body.bandwidth_down = parseRate(o.bandwidthDown, 'bandwidth-down');
  if (o.maxConnections !== undefined) body.max_connections = parseMaxConnections(o.maxConnections);
  if (o.traffic !== undefined) body.traffic = parseTraffic(o.traffic);
  if (o.balance !== undefined) body.balance = parseBalance(o.balance);
  if (o.allowFrom !== undefined) body.allow_from = await cidrOption(o.allowFrom, '--allow-from');
  if (o.tunnelFrom !== undefined) body.tunnel_from = await cidrOption(o.tunnelFrom, '--tunnel-from');
  if (o.repo !== undefined) {
    if (!isValidLabel(o.repo) || !o.repo.includes('/')) {
      throw new TetherError('USAGE', `invalid repository ${JSON.stringify(o.repo)}: use <group>/<repo>`, {
        status: 400,
      });
    }
    if (o.balance !== undefined) {
      throw new TetherError('USAGE', '--balance applies to the whole tenant: leave out --repo', {
        status: 400,
      });
    }
    if (o.tunnelFrom !== undefined) {
      throw new TetherError('USAGE', '--tunnel-from applies to the whole tenant: leave out --repo', {
        status: 400,
      });
    }
    if (Object.keys(body).length > 0) body.repository = o.repo;
  }
  return body;
}

const target = (cmd: Command): AdminTarget =>
  findAdmin(process.env, cmd.optsWithGlobals().dataDir as string | undefined);

export async function add(
  id: string,
  o: {
    pubKey?: string;
    force?: boolean;
    ports?: string;
    allowFrom?: string;
    tunnelFrom?: string;
    json?: boolean;
  },
  cmd: Command,
): Promise<void> {
  assertTenantId(id);
  const allowFrom = (await cidrOption(o.allowFrom, '--allow-from')) ?? undefined;
  const tunnelFrom = (await cidrOption(o.tunnelFrom, '--tunnel-from')) ?? undefined;
  const quota = o.ports === undefined ? undefined : await parseQuota(o.ports);
  const publicKey =
    o.pubKey === undefined
      ? undefined
      : (await import('../core/ssh-keys.js')).parsePublicKey(readPubKeyFile(o.pubKey)).line;
  const r = await adminRequest<{
    tenant: TenantView;
    created: boolean;
    fingerprint: string;
    public_key: string;
    private_key?: string;
  }>(target(cmd), 'POST', '/v1/tenants', {
    id,
    public_key: publicKey,
    force: o.force === true ? true : undefined,
    quota,
    allow_from: allowFrom,
    tunnel_from: tunnelFrom,
  });
  if (o.json) return out(JSON.stringify(r, null, 2));
  err(
    `${r.created ? 'added' : 'replaced the keys of'} tenant ${id} (quota ${r.tenant.quota}, key ${r.fingerprint})\n` +
      (r.tenant.allow_from ? `callers only from ${r.tenant.allow_from.join(', ')}\n` : '') +
      (r.tenant.tunnel_from ? `connectors only from ${r.tenant.tunnel_from.join(', ')}\n` : '') +
      (r.private_key ? 'its private key follows; give it to the customer securely, it is not stored:\n' : ''),
  );
  if (r.private_key) out(r.private_key);
}

export async function list(id: string | undefined, o: { json?: boolean }, cmd: Command): Promise<void> {
  if (id !== undefined) assertTenantId(id);
  const tenants =
    id === undefined
      ? (await adminRequest<{ tenants: TenantView[] }>(target(cmd), 'GET', '/v1/tenants')).tenants
      : [(await adminRequest<{ tenant: TenantView }>(target(cmd), 'GET', `/v1/tenants/${id}`)).tenant];
  out(o.json ? JSON.stringify(id === undefined ? tenants : tenants[0], null, 2) : formatTenants(tenants));
}

export async function change(
  a: string | undefined,
  b: string | undefined,
  o: ChangeOptions,
  cmd: Command,
): Promise<void> {
  const body = await limitsBody(o);
  const hasLimits = Object.keys(body).length > 0;
  let n: string | undefined;
  let id: string;
  if (b !== undefined) {
    n = a;
    id = b;
  } else if (a !== undefined && hasLimits) {
    id = a;
  } else {
    throw new TetherError(
      'USAGE',
      a === undefined
        ? 'nothing to change: tether tenants change <n> <id> sets the quota; --bandwidth, --max-connections, --traffic or --balance set limits; --allow-from and --tunnel-from set source-address allowlists'
        : `missing the tenant id: tether tenants change <n> <id> (or a limit option with only the id)`,
      { status: 400 },
    );
  }
  const quota = n === undefined ? undefined : await parseQuota(n);
  assertTenantId(id);
  if (o.repo !== undefined && !hasLimits) {
    throw new TetherError(
      'USAGE',
      '--repo needs a limit option (--bandwidth, --max-connections, --traffic, --allow-from)',
      {
        status: 400,
      },
    );
  }
  const r = await adminRequest<{ tenant: TenantView }>(target(cmd), 'PATCH', `/v1/tenants/${id}`, {
    quota,
    ...body,
  });
  if (o.json) return out(JSON.stringify(r.tenant, null, 2));
  const lines: string[] = [];
  if (quota !== undefined) {
    lines.push(
      quota === 0
        ? `tenant ${id} disabled (quota 0); its sessions were ended`
        : `tenant ${id} quota set to ${quota}`,
    );
  }
  const lists = 'allow_from' in body || 'tunnel_from' in body;
  const onlyLists = Object.keys(body).every((k) => ['allow_from', 'tunnel_from', 'repository'].includes(k));
  if (hasLimits && !onlyLists) {
    if (o.repo !== undefined) {
      const f = r.tenant.forwards.find((x) => x.label === o.repo);
      lines.push(
        `repository ${o.repo} of ${id}: ${f?.limits ? limitsText(f.limits) : 'no limits of its own'}`,
      );
    } else lines.push(`tenant ${id}: ${r.tenant.limits ? limitsText(r.tenant.limits) : 'limits changed'}`);
  }
  if (lists) {
    const of = o.repo !== undefined ? `repository ${o.repo} of ${id}` : `tenant ${id}`;
    const show = (v: unknown, none: string) => (Array.isArray(v) ? v.join(', ') : none);
    if ('allow_from' in body) lines.push(`${of}: allow_from ${show(body.allow_from, 'off (anyone)')}`);
    if ('tunnel_from' in body) lines.push(`${of}: tunnel_from ${show(body.tunnel_from, 'off (anywhere)')}`);
  }
  out(lines.join('\n'));
}

export async function remove(id: string, _o: unknown, cmd: Command): Promise<void> {
  assertTenantId(id);
  await adminRequest(target(cmd), 'DELETE', `/v1/tenants/${id}`);
  out(`tenant ${id} removed`);
}

export async function enrollment(id: string, o: { json?: boolean }, cmd: Command): Promise<void> {
  assertTenantId(id);
  const r = await adminRequest<{ token: string; expires_at: string }>(
    target(cmd),
    'POST',
    `/v1/tenants/${id}/enrollments`,
    {},
  );
  if (o.json) return out(JSON.stringify(r, null, 2));
  err(`one-time enrollment token for ${id}, valid until ${r.expires_at}:\n`);
  out(r.token);
}

export async function repos(id: string, o: { json?: boolean }, cmd: Command): Promise<void> {
  assertTenantId(id);
  const r = await adminRequest<RepoListing>(target(cmd), 'GET', `/v1/tenants/${id}/repositories`);
  out(o.json ? JSON.stringify(r, null, 2) : formatRepositories(r));
}

export async function rotateGroupKey(
  id: string,
  group: string,
  o: { json?: boolean },
  cmd: Command,
): Promise<void> {
  assertTenantId(id);
  const r = await adminRequest<{ tenant: string; group: string; key: string; key_created_at: string }>(
    target(cmd),
    'POST',
    `/v1/tenants/${id}/groups/${encodeURIComponent(group)}/key`,
  );
  if (o.json) return out(JSON.stringify(r, null, 2));
  err(
    `new key for group ${r.group} of tenant ${r.tenant} (open connections stay; new ones need this key):\n`,
  );
  out(r.key);
}
