import { z } from 'zod';
import type { TenantService } from '../core/tenants.js';
import { parseDuration } from '../core/units.js';
import { errors } from '../errors/index.js';
import type { ConnectionRecordRow, Store } from '../store/types.js';
import type { Route } from './router.js';

/** At most this many records per answer. */
export const MAX_AUDIT_LIMIT = 1000;
const DEFAULT_AUDIT_LIMIT = 100;

export const connectionRecordView = z.object({
  opened_at: z.string(),
  ended_at: z.string(),
  duration_ms: z.number().int(),
  front_door: z.string(),
  repository: z.string(),
  source: z.string(),
  identity: z.string().nullable(),
  connector: z.string().nullable(),
  bytes_in: z.number().int(),
  bytes_out: z.number().int(),
  outcome: z.enum(['closed', 'error', 'refused']),
  reason: z.string().nullable(),
});

export const auditResponse = z.object({
  tenant: z.string(),
  records: z.array(connectionRecordView),
});

export type ConnectionRecordView = z.infer<typeof connectionRecordView>;

const example = {
  tenant: 'acme',
  records: [
    {
      opened_at: '2026-12-03T10:00:00.000Z',
      ended_at: '2026-12-03T10:00:04.250Z',
      duration_ms: 4250,
      front_door: 'access_proxy',
      repository: 'docs/share',
      source: '203.0.113.7:51234',
      identity: 'group key docs',
      connector: '198.51.100.2:40022 (tether-connector/0.1.0, session 3f2a)',
      bytes_in: 1830,
      bytes_out: 5242880,
      outcome: 'closed' as const,
      reason: null,
    },
  ],
};

/**
 * `since` as a moment: an ISO time, or a duration back from now ("30m", "24h", "7d").
 * Throws a 400 naming the value otherwise.
 */
export function parseSince(v: string, now: number): string {
  const back = parseDuration(v);
  if (back !== null && /[a-z]$/.test(v.trim())) return new Date(now - back).toISOString();
  if (/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(v.trim())) {
    const t = Date.parse(v.trim());
    if (Number.isFinite(t)) return new Date(t).toISOString();
  }
  throw errors.badRequest(
    `invalid since ${JSON.stringify(v.slice(0, 80))}: use a time (2026-12-01 or 2026-12-01T08:00:00Z) or a duration back from now (30m, 24h, 7d)`,
  );
}

export function parseAuditLimit(v: string): number {
  const n = /^\d{1,7}$/.test(v) ? Number(v) : Number.NaN;
  if (!Number.isInteger(n) || n < 1 || n > MAX_AUDIT_LIMIT)
    throw errors.badRequest(
      `invalid limit ${JSON.stringify(v.slice(0, 80))}: use a whole number from 1 to ${MAX_AUDIT_LIMIT}`,
    );
  return n;
}

export function recordView(r: ConnectionRecordRow): ConnectionRecordView {
  return {
    opened_at: r.opened_at,
    ended_at: r.ended_at,
    duration_ms: r.duration_ms,
    front_door: r.front_door,
    repository: r.label,
    source: r.source,
    identity: r.identity,
    connector: r.connector,
    bytes_in: r.bytes_in,
    bytes_out: r.bytes_out,
    outcome: r.outcome as ConnectionRecordView['outcome'],
    reason: r.reason,
  };
}

/** Reads a tenant's connection records (newest first); checks the query before the store is asked. */
export async function readAudit(
  d: { store: Pick<Store, 'listConnectionRecords'>; tenants: Pick<TenantService, 'get'> },
  id: string,
  query: URLSearchParams,
  now: number,
): Promise<z.infer<typeof auditResponse>> {
  for (const k of query.keys()) {
    if (k !== 'since' && k !== 'limit')
      throw errors.badRequest(
        `unknown query parameter ${JSON.stringify(k.slice(0, 40))}; use since and limit`,
      );
  }
  const sinceText = query.get('since');
  const limitText = query.get('limit');
  const since = sinceText === null ? undefined : parseSince(sinceText, now);
  const limit = limitText === null ? DEFAULT_AUDIT_LIMIT : parseAuditLimit(limitText);
  await d.tenants.get(id);
  const rows = await d.store.listConnectionRecords({ tenantId: id, limit, ...(since ? { since } : {}) });
  return { tenant: id, records: rows.map(recordView) };
}

/** GET /v1/tenants/{id}/audit: who reached the tenant's network, one record per connection. */
export function auditRoutes(d: {
  store: Pick<Store, 'listConnectionRecords'>;
  tenants: Pick<TenantService, 'get'>;
  now: () => number;
}): Route[] {
  return [
    {
      method: 'GET',
      path: '/v1/tenants/{id}/audit',
      operationId: 'tenantAudit',
      summary: "A tenant's connection records, newest first",
      description:
        "One record per forwarded connection (and per refused one): front door, repository, the caller's address and identity, the connector that served it, bytes each way, duration and how it ended. Query: `since` (an ISO time or a duration back from now such as 24h), `limit` (1-1000, default 100). Records are written in batches about once a second and kept for `audit.retention`.",
      query: {
        since:
          'Only records that ended at or after this time: 2026-12-01T08:00:00Z, or 30m, 24h, 7d back from now.',
        limit: `At most this many records (1-${MAX_AUDIT_LIMIT}, default ${DEFAULT_AUDIT_LIMIT}).`,
      },
      responses: { 200: { description: 'The records.', schema: auditResponse, example } },
      errors: [400, 404],
      handler: async ({ req, params }) => {
        const url = new URL(req.url ?? '/', 'http://admin');
        return [200, await readAudit(d, params[0]!, url.searchParams, d.now())];
      },
    },
  ];
}
