import type { TenantView } from '../admin/schemas.js';
import { formatBytes, formatPeriod, formatRate } from '../core/units.js';
import { table } from './table.js';

export function since(iso: string): string {
  return iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
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
  const allowRows = allowlistRows(tenants);
  if (allowRows.length > 0) {
    lines.push('', table(['TENANT', 'SCOPE', 'ALLOW FROM', 'TUNNEL FROM'], allowRows));
  }
  return lines.join('\n');
}

/** One row per tenant or repository with a source-address allowlist of its own. */
function allowlistRows(tenants: TenantView[]): string[][] {
  const rows: string[][] = [];
  const text = (v: string[] | null | undefined, none: string) => (v ? v.join(', ') : none);
  for (const t of tenants) {
    if (t.allow_from || t.tunnel_from) {
      rows.push([t.id, '(tenant)', text(t.allow_from, 'anyone'), text(t.tunnel_from, 'anywhere')]);
    }
    for (const f of t.forwards) {
      if (f.allow_from) rows.push([t.id, f.label, text(f.allow_from, 'anyone'), '-']);
    }
  }
  return rows;
}

export type RepoView = TenantView['forwards'][number];

export interface RepoListing {
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
