import { endpointInfo, type ForwardRegistry } from '../core/forward-registry.js';
import type { LeaseRow, Store, TenantRow } from '../store/types.js';
import type { SourceAllowlists } from '../tunnel/source-allowlists.js';
import type { ForwardView, TenantView } from './schemas.js';

const destinationOf = (m: { host: string | null; dest_port: number | null }): string | null =>
  m.host ? `${m.host}${m.dest_port ? `:${m.dest_port}` : ''}` : null;

/** Builds the tenant listing: stored state (quota, keys, leases) joined with live state. */
export async function tenantViews(
  store: Store,
  registry: ForwardRegistry,
  rows: TenantRow[],
  nodeId: string | null,
  allowlists?: Pick<SourceAllowlists, 'view'>,
): Promise<TenantView[]> {
  const leases = await store.listLeases();
  const byTenant = new Map<string, LeaseRow[]>();
  for (const l of leases) {
    const list = byTenant.get(l.tenant_id) ?? [];
    list.push(l);
    byTenant.set(l.tenant_id, list);
  }
  const out: TenantView[] = [];
  const limits = registry.limits;
  for (const t of rows) {
    const keys = await store.listKeys(t.id);
    const forwards: ForwardView[] = (byTenant.get(t.id) ?? []).map((l) => {
      const live = registry.get(t.id, l.label);
      const remote = registry.remoteOf(t.id, l.label);
      // An online connector's word first: a withdrawn one may point at a host that is down.
      // connectors other processes (workers) report; a cluster member's forwards come without
      const elsewhere = remote.flatMap((r) => (r.endpoints ?? []).map((e) => ({ ...e, node: r.node })));
      const meta =
        live?.endpoints.find((e) => !e.withdrawn && e.meta)?.meta ??
        live?.meta ??
        elsewhere.find((e) => !e.withdrawn && e.meta)?.meta ??
        l;
      const nodes = [...(live ? [nodeId ?? ''] : []), ...remote.map((r) => r.node)].filter(Boolean);
      const remoteOnline = remote.some((r) => !r.endpoints || r.endpoints.some((e) => !e.withdrawn));
      return {
        label: l.label,
        port: l.port,
        state:
          remoteOnline || live?.endpoints.some((e) => !e.withdrawn)
            ? 'online'
            : live || remote.length > 0
              ? 'withdrawn'
              : 'offline',
        service: meta.service,
        scheme: meta.scheme,
        destination: destinationOf(meta),
        path: meta.path,
        connections: (live?.connections ?? 0) + remote.reduce((n, r) => n + (r.connections ?? 0), 0),
        connectors: (live?.endpoints.length ?? 0) + remote.reduce((n, r) => n + r.connectors, 0),
        node: nodes.length > 0 ? nodes.join(',') : null,
        endpoints: [
          ...(live?.endpoints ?? []).map((e) => ({ ...endpointInfo(e), node: nodeId })),
          ...elsewhere,
        ].map((e) => ({
          session: e.session,
          source: e.source,
          since: new Date(e.since).toISOString(),
          agent: e.agent,
          connections: e.connections,
          state: e.withdrawn ? ('withdrawn' as const) : ('online' as const),
          reason: e.withdrawn ?? null,
          destination: e.meta ? destinationOf(e.meta) : null,
          node: e.node,
        })),
        ...(limits ? limits.repositoryView(t.id, l.label) : {}),
        ...(allowlists ? { allow_from: allowlists.view(t.id, l.label).allow_from } : {}),
      };
    });
    out.push({
      id: t.id,
      quota: t.quota,
      in_use: registry.countLabels(t.id),
      created_at: t.created_at,
      updated_at: t.updated_at,
      keys: keys.map((k) => ({ fingerprint: k.fingerprint, created_at: k.created_at })),
      sessions: [...registry.sessionsOf(t.id), ...registry.remoteSessionsOf(t.id)].map((s) => ({
        id: s.id,
        source: s.source,
        since: new Date(s.since).toISOString(),
        fingerprint: s.fingerprint,
        agent: s.agent,
      })),
      forwards,
      ...(limits ? limits.view(t.id) : {}),
      connections: registry.openConnections(t.id) + registry.remoteCounts(t.id).connections,
      ...(allowlists ? allowlists.view(t.id) : {}),
    });
  }
  return out;
}
