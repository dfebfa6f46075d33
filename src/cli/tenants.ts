import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { TenantView } from '../admin/schemas.js';
import { assertTenantId, isValidLabel } from '../core/ids.js';
import {
  formatBytes,
  formatPeriod,
  formatRate,
  parseBalance,
  parseMaxConnections,
  parseRate,
  parseTraffic,
} from '../core/limits.js';
import { parsePublicKey } from '../core/ssh-keys.js';
import { parseQuota } from '../core/tenants.js';
import { TetherError } from '../errors/index.js';
import { type AdminTarget, adminRequest, findAdmin } from './admin-client.js';
import { printableLines, table } from './table.js';

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

function since(iso: string): string {
  return iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

interface ChangeOptions {
  bandwidth?: string;
  bandwidthUp?: string;
  bandwidthDown?: string;
  maxConnections?: string;
  traffic?: string;
  balance?: string;
  repo?: string;
  json?: boolean;
}

/** The limit options as PATCH fields, checked here first with the gateway's own parsers. */
function limitsBody(o: ChangeOptions): Record<string, unknown> {
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
    if (Object.keys(body).length > 0) body.repository = o.repo;
  }
  return body;
}

type LimitsOf = NonNullable<TenantView['limits']> | NonNullable<TenantView['forwards'][number]['limits']>;

/** "bandwidth 1 MB/s each way; at most 50 connections; traffic 500 GB per month" or "no limits". */
export function limitsText(l: LimitsOf, usage?: TenantView['usage']): string {
  const parts: string[] = [];
  if (l.bandwidth_up !== null && l.bandwidth_up === l.bandwidth_down) {
    parts.push(`bandwidth ${formatRate(l.bandwidth_up)} each way`);
  } else {
    if (l.bandwidth_up !== null) parts.push(`bandwidth up ${formatRate(l.bandwidth_up)}`);
    if (l.bandwidth_down !== null) parts.push(`bandwidth down ${formatRate(l.bandwidth_down)}`);
  }
  if (l.max_connections !== null) parts.push(`at most ${l.max_connections} connections`);
  if (l.traffic_limit !== null) {
    const used = usage
      ? ` (${formatBytes(usage.bytes)} used${usage.exhausted ? ', EXHAUSTED' : ''}${usage.resets_at ? `, resets ${usage.resets_at}` : ''})`
      : '';
    parts.push(`traffic ${formatBytes(l.traffic_limit)} ${formatPeriod(l.traffic_period ?? 'month')}${used}`);
  }
  if ('balance' in l && l.balance !== 'round-robin') parts.push(`balance ${l.balance}`);
  return parts.length > 0 ? parts.join('; ') : 'no limits';
}

/** Short form for the table: "1 MB/s, 50 conn, 500 GB/month". */
function limitsCell(t: TenantView): string {
  const l = t.limits;
  if (!l) return '-';
  const parts: string[] = [];
  if (l.bandwidth_up !== null || l.bandwidth_down !== null) {
    parts.push(
      l.bandwidth_up === l.bandwidth_down
        ? formatRate(l.bandwidth_up!)
        : `${l.bandwidth_up === null ? '-' : formatRate(l.bandwidth_up)} up/${l.bandwidth_down === null ? '-' : formatRate(l.bandwidth_down)} down`,
    );
  }
  if (l.max_connections !== null) parts.push(`${l.max_connections} conn`);
  if (l.traffic_limit !== null) {
    parts.push(
      `${formatBytes(l.traffic_limit)}/${l.traffic_period === 'month' ? 'month' : l.traffic_period}`,
    );
  }
  if (l.balance !== 'round-robin') parts.push('least-conn');
  return parts.length > 0 ? parts.join(', ') : '-';
}

function trafficCell(t: TenantView): string {
  if (!t.usage) return '-';
  const used = formatBytes(t.usage.bytes);
  if (t.limits?.traffic_limit == null) return used;
  return `${used} of ${formatBytes(t.limits.traffic_limit)}${t.usage.exhausted ? ' (spent)' : ''}`;
}

export function formatTenants(tenants: TenantView[]): string {
  if (tenants.length === 0) return 'no tenants (add one with: tether tenants add <id>)';
  const rows = tenants.map((t) => {
    const first = t.sessions[0];
    return [
      t.id,
      t.quota === 0 ? '0 (disabled)' : String(t.quota),
      String(t.in_use),
      first ? since(first.since) : '-',
      t.sessions.length > 1 ? `${first!.source} (+${t.sessions.length - 1})` : first ? first.source : '-',
      limitsCell(t),
      trafficCell(t),
    ];
  });
  const lines = [
    table(['TENANT', 'QUOTA', 'IN USE', 'CONNECTED SINCE', 'SOURCE', 'LIMITS', 'TRAFFIC'], rows),
  ];
  const fwdRows: string[][] = [];
  for (const t of tenants) {
    for (const f of t.forwards) {
      fwdRows.push([
        t.id,
        f.label,
        f.destination
          ? `${f.service ? `${f.service}${f.scheme ? `+${f.scheme}` : ''}://` : ''}${f.destination}${f.path ?? ''}`
          : '-',
        String(f.port),
        f.state,
        String(f.connections),
        String(f.connectors),
        ...(f.node ? [f.node] : []),
      ]);
    }
  }
  const connRows: string[][] = [];
  for (const t of tenants) {
    for (const f of t.forwards) {
      for (const e of f.endpoints ?? []) {
        connRows.push([
          t.id,
          f.label,
          e.source,
          since(e.since),
          String(e.connections),
          e.state === 'withdrawn' ? `withdrawn: ${e.reason ?? ''}` : e.state,
        ]);
      }
    }
  }
  if (fwdRows.length > 0) {
    const hasNode = tenants.some((t) => t.forwards.some((f) => f.node));
    lines.push(
      '',
      table(
        [
          'TENANT',
          'FORWARD',
          'DESTINATION',
          'PORT',
          'STATE',
          'CONNECTIONS',
          'CONNECTORS',
          ...(hasNode ? ['NODE'] : []),
        ],
        fwdRows,
      ),
    );
  }
  if (connRows.length > 0) {
    lines.push(
      '',
      table(['TENANT', 'FORWARD', 'CONNECTOR', 'CONNECTED SINCE', 'CONNECTIONS', 'STATE'], connRows),
    );
  }
  return lines.join('\n');
}

type RepoView = TenantView['forwards'][number];

interface RepoListing {
  tenant: string;
  groups: Array<{
    group: string;
    key: string;
    key_created_at: string;
    repositories: Array<RepoView & { repository: string; address: string }>;
  }>;
  ungrouped: RepoView[];
}

function serviceText(f: RepoView): string {
  if (!f.service) return '-';
  return f.scheme && f.scheme !== f.service ? `${f.service}+${f.scheme}` : f.service;
}

/**
 * Puts under each repository row of a rendered table one indented line per connector serving it
 * (source, where it sends the connections, since when, connections, state or why it was
 * withdrawn), aligned across the listing;
 * connectors on other cluster members as a count. `repos[i]` belongs to the table's row i.
 */
function withConnectors(rendered: string, repos: RepoView[]): string {
  const [head, ...lines] = rendered.split('\n');
  const cells = repos.map((f) =>
    (f.endpoints ?? []).map((e) => [
      `connector ${e.source}`,
      `to ${e.destination ?? '-'}`,
      `since ${since(e.since)}`,
      `${e.connections} connection${e.connections === 1 ? '' : 's'}`,
      e.state === 'withdrawn' ? `withdrawn: ${e.reason ?? 'no reason given'}` : e.state,
    ]),
  );
  const widths = [0, 1, 2, 3].map((i) => Math.max(0, ...cells.flat().map((c) => c[i]!.length)));
  const out = [head!];
  lines.forEach((line, i) => {
    out.push(line);
    const f = repos[i];
    if (!f) return;
    for (const c of cells[i]!)
      out.push(`  ${c.map((x, k) => (k < 4 ? x.padEnd(widths[k]!) : x)).join('  ')}`);
    const remote = f.connectors - (f.endpoints?.length ?? 0);
    if (remote > 0) {
      out.push(
        `  ${remote} connector${remote === 1 ? '' : 's'} on other cluster members${f.node ? ` (${f.node})` : ''}`,
      );
    }
  });
  return out.join('\n');
}

/**
 * `tether tenants repos` as text: one row per repository with its connectors indented below it,
 * then the group keys.
 */
export function formatRepositories(r: RepoListing): string {
  const rows: string[][] = [];
  const row = (group: string, repo: string, address: string, f: RepoView) => [
    group,
    repo,
    address,
    serviceText(f),
    f.destination ? `${f.destination}${f.path && f.path !== '/' ? f.path : ''}` : '-',
    String(f.port),
    f.state,
    String(f.connections),
    f.node ?? '-',
  ];
  const repos: RepoView[] = [];
  for (const g of r.groups)
    for (const f of g.repositories) {
      rows.push(row(g.group, f.repository, f.address, f));
      repos.push(f);
    }
  for (const f of r.ungrouped) {
    rows.push(row('-', f.label, '-', f));
    repos.push(f);
  }
  if (rows.length === 0 && r.groups.length === 0) {
    return `tenant ${r.tenant} has no repositories yet (they appear once a connector forwards them)`;
  }
  const hasNode = rows.some((x) => x[8] !== '-');
  const header = [
    'GROUP',
    'REPOSITORY',
    'ADDRESS',
    'SERVICE',
    'DESTINATION',
    'PORT',
    'STATE',
    'CONNECTIONS',
    ...(hasNode ? ['NODE'] : []),
  ];
  const parts =
    rows.length > 0
      ? [
          withConnectors(
            table(
              header,
              rows.map((x) => (hasNode ? x : x.slice(0, 8))),
            ),
            repos,
          ),
        ]
      : [];
  if (r.groups.length > 0) {
    if (parts.length > 0) parts.push('');
    parts.push(
      table(
        ['GROUP', 'KEY', 'KEY CREATED'],
        r.groups.map((g) => [g.group, g.key, since(g.key_created_at)]),
      ),
    );
  }
  return parts.join('\n');
}

export function registerTenants(program: Command): void {
  const tenants = program
    .command('tenants')
    .description(
      "manage tenants on a running gateway (a client of the admin API; finds it through TETHER_ADMIN_URL/TETHER_ADMIN_TOKEN or the gateway's data dir)",
    )
    .option(
      '-d, --data-dir <dir>',
      'the gateway data dir to read gateway.json and admin.token from (default: $TETHER_DATA_DIR or ./.tether)',
    );
  const target = (cmd: Command): AdminTarget =>
    findAdmin(process.env, cmd.optsWithGlobals().dataDir as string | undefined);

  tenants
    .command('add <id>')
    .description('add a tenant; prints its new private key once on stdout (or stores --pub-key instead)')
    .option('--pub-key <file>', 'store this OpenSSH public key instead of generating a pair')
    .option('-f, --force', 'replace the keys of an existing tenant (ends its live sessions)')
    .option('--ports <n>', 'quota: forwards at once (default 20)')
    .option('--json', 'print JSON')
    .action(
      async (
        id: string,
        o: { pubKey?: string; force?: boolean; ports?: string; json?: boolean },
        cmd: Command,
      ) => {
        assertTenantId(id);
        const quota = o.ports === undefined ? undefined : parseQuota(o.ports);
        const publicKey = o.pubKey === undefined ? undefined : parsePublicKey(readPubKeyFile(o.pubKey)).line;
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
        });
        if (o.json) return out(JSON.stringify(r, null, 2));
        err(
          `${r.created ? 'added' : 'replaced the keys of'} tenant ${id} (quota ${r.tenant.quota}, key ${r.fingerprint})\n` +
            (r.private_key
              ? 'its private key follows; give it to the customer securely, it is not stored:\n'
              : ''),
        );
        if (r.private_key) out(r.private_key);
      },
    );

  tenants
    .command('list [id]')
    .description('list tenants, their sessions and forwards')
    .option('--json', 'print JSON')
    .action(async (id: string | undefined, o: { json?: boolean }, cmd: Command) => {
      if (id !== undefined) assertTenantId(id);
      const list =
        id === undefined
          ? (await adminRequest<{ tenants: TenantView[] }>(target(cmd), 'GET', '/v1/tenants')).tenants
          : [(await adminRequest<{ tenant: TenantView }>(target(cmd), 'GET', `/v1/tenants/${id}`)).tenant];
      out(o.json ? JSON.stringify(id === undefined ? list : list[0], null, 2) : formatTenants(list));
    });

  tenants
    .command('change [n] [id]')
    .description(
      'set the quota (forwards at once; 0 disables the tenant and ends its sessions) and traffic limits: ' +
        '"change <n> <id>", "change --bandwidth 10MB/s <id>" or both',
    )
    .option(
      '--bandwidth <rate>',
      'bandwidth cap each way, e.g. 10MB/s, 500KB/s, 100Mbit/s (0 or off: no cap)',
    )
    .option('--bandwidth-up <rate>', 'bandwidth cap towards the repositories only')
    .option('--bandwidth-down <rate>', 'bandwidth cap from the repositories only')
    .option('--max-connections <n>', 'concurrent connections (0 or off: no cap)')
    .option('--traffic <quota>', 'traffic quota, e.g. 500GB/month or 10GB/30d (off: none)')
    .option(
      '--balance <how>',
      "spread new connections over a repository's connectors: round-robin or least-connections",
    )
    .option('--repo <group/repo>', 'apply the limits to this repository instead of the whole tenant')
    .option('--json', 'print JSON')
    .action(async (a: string | undefined, b: string | undefined, o: ChangeOptions, cmd: Command) => {
      const body = limitsBody(o);
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
            ? 'nothing to change: tether tenants change <n> <id> sets the quota; --bandwidth, --max-connections, --traffic or --balance set limits'
            : `missing the tenant id: tether tenants change <n> <id> (or a limit option with only the id)`,
          { status: 400 },
        );
      }
      const quota = n === undefined ? undefined : parseQuota(n);
      assertTenantId(id);
      if (o.repo !== undefined && !hasLimits) {
        throw new TetherError(
          'USAGE',
          '--repo needs a limit option (--bandwidth, --max-connections, --traffic)',
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
      if (hasLimits) {
        if (o.repo !== undefined) {
          const f = r.tenant.forwards.find((x) => x.label === o.repo);
          lines.push(
            `repository ${o.repo} of ${id}: ${f?.limits ? limitsText(f.limits) : 'no limits of its own'}`,
          );
        } else
          lines.push(`tenant ${id}: ${r.tenant.limits ? limitsText(r.tenant.limits) : 'limits changed'}`);
      }
      out(lines.join('\n'));
    });

  tenants
    .command('remove <id>')
    .description('remove a tenant: ends its sessions, deletes its keys, frees its leases')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      assertTenantId(id);
      await adminRequest(target(cmd), 'DELETE', `/v1/tenants/${id}`);
      out(`tenant ${id} removed`);
    });

  tenants
    .command('enroll <id>')
    .description('print a one-time token (valid 24 h) for `tether connector register --token`')
    .option('--json', 'print JSON')
    .action(async (id: string, o: { json?: boolean }, cmd: Command) => {
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
    });

  tenants
    .command('repos <id>')
    .description(
      "list a tenant's repositories by group: access-proxy address, service, destination, lease port, state, connections, and each group's key",
    )
    .option('--json', 'print JSON')
    .action(async (id: string, o: { json?: boolean }, cmd: Command) => {
      assertTenantId(id);
      const r = await adminRequest<RepoListing>(target(cmd), 'GET', `/v1/tenants/${id}/repositories`);
      out(o.json ? JSON.stringify(r, null, 2) : formatRepositories(r));
    });

  tenants
    .command('rotate-group-key <id> <group>')
    .description(
      'give a group a new key and print it; open front-door connections stay, new ones need the new key',
    )
    .option('--json', 'print JSON')
    .action(async (id: string, group: string, o: { json?: boolean }, cmd: Command) => {
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
    });
}
