import type { Command } from 'commander';
import { type ConnectionRecordView, MAX_AUDIT_LIMIT } from '../admin/audit-routes.js';
import { assertTenantId } from '../core/ids.js';
import { formatBytes, parseDuration } from '../core/units.js';
import { errors } from '../errors/index.js';
import { adminRequest, findAdmin } from './admin-client.js';
import { printableLines, table } from './table.js';

/** `tether tenants audit <id>`: who reached the tenant's network (loaded only when it runs). */

function checkSince(v: string): void {
  const ok =
    (parseDuration(v) !== null && /[a-z]$/.test(v.trim())) ||
    (/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(v.trim()) &&
      Number.isFinite(Date.parse(v)));
  if (!ok)
    throw errors.badRequest(
      `invalid --since ${JSON.stringify(v)}: use a time (2026-12-01 or 2026-12-01T08:00:00Z) or a duration back from now (30m, 24h, 7d)`,
    );
}

function checkLimit(v: string): void {
  const n = /^\d{1,7}$/.test(v) ? Number(v) : Number.NaN;
  if (!(n >= 1 && n <= MAX_AUDIT_LIMIT))
    throw errors.badRequest(
      `invalid --limit ${JSON.stringify(v)}: use a whole number from 1 to ${MAX_AUDIT_LIMIT}`,
    );
}

const seconds = (ms: number) => (ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`);

/** The records as a table, oldest at the bottom like a log read upward. */
export function formatAudit(tenant: string, records: ConnectionRecordView[]): string {
  if (records.length === 0) return `no connection records for ${tenant} in this period`;
  return table(
    ['ENDED', 'DOOR', 'REPOSITORY', 'CALLER', 'IDENTITY', 'IN', 'OUT', 'TIME', 'OUTCOME'],
    records.map((r) => [
      r.ended_at.replace('T', ' ').replace(/\.\d+Z$/, 'Z'),
      r.front_door,
      r.repository,
      r.source,
      r.identity ?? '-',
      formatBytes(r.bytes_in),
      formatBytes(r.bytes_out),
      seconds(r.duration_ms),
      r.reason ? `${r.outcome}: ${r.reason}` : r.outcome,
    ]),
  );
}

export async function audit(
  id: string,
  o: { since?: string; limit?: string; json?: boolean },
  cmd: Command,
): Promise<void> {
  assertTenantId(id);
  if (o.since !== undefined) checkSince(o.since);
  if (o.limit !== undefined) checkLimit(o.limit);
  const q = new URLSearchParams();
  if (o.since !== undefined) q.set('since', o.since);
  if (o.limit !== undefined) q.set('limit', o.limit);
  const qs = q.size > 0 ? `?${q}` : '';
  const r = await adminRequest<{ tenant: string; records: ConnectionRecordView[] }>(
    findAdmin(process.env, cmd.optsWithGlobals().dataDir as string | undefined),
    'GET',
    `/v1/tenants/${id}/audit${qs}`,
  );
  const text = o.json ? JSON.stringify(r, null, 2) : formatAudit(r.tenant, r.records);
  process.stdout.write(`${printableLines(text)}\n`);
}
