import type { ForwardRegistry } from '../core/forward-registry.js';

/** Per tenant, once a second: what moves right now. */
export interface TenantStats {
  sessions: number;
  connections: number;
  /** Bytes per second through the tenant's sessions: toward the connectors and back. */
  in_rate: number;
  out_rate: number;
}

export interface ForwardStats {
  connections: number;
  total_connections: number;
  /** Bytes of closed connections since the forward came up. */
  bytes_in: number;
  bytes_out: number;
}

export interface StatsMessage {
  time: string;
  tenants: Record<string, TenantStats>;
  /** Keyed by "<tenant> <label>". */
  forwards: Record<string, ForwardStats>;
}

/**
 * The dashboard's live figures of the sessions and forwards this process carries: throughput
 * from the sessions' transport counters (the difference since the last sample), connections and
 * bytes from the registry. Under `workers` every worker samples its own, and the primary adds
 * them up (`mergeStats`).
 */
export class TrafficSampler {
  private samples = new Map<string, { received: number; sent: number; at: number }>();

  constructor(private readonly registry: Pick<ForwardRegistry, 'sessionsOf' | 'list'>) {}

  /** The figures now; `advance`: this sample is the base of the next rates (the timer's). */
  stats(advance: boolean): StatsMessage {
    const now = Date.now();
    const tenants: Record<string, TenantStats> = {};
    const forTenant = (t: string) => {
      tenants[t] ??= { sessions: 0, connections: 0, in_rate: 0, out_rate: 0 };
      return tenants[t];
    };
    const next = new Map<string, { received: number; sent: number; at: number }>();
    for (const s of this.registry.sessionsOf()) {
      const t = forTenant(s.tenant);
      t.sessions++;
      const traffic = s.traffic?.();
      if (!traffic) continue;
      const sample = { ...traffic, at: now };
      next.set(s.id, sample);
      const prev = this.samples.get(s.id);
      if (prev && now > prev.at) {
        const secs = (now - prev.at) / 1000;
        // Bytes the gateway sent on the tunnel go toward the connector ("in").
        t.in_rate += Math.max(0, Math.round((sample.sent - prev.sent) / secs));
        t.out_rate += Math.max(0, Math.round((sample.received - prev.received) / secs));
      }
    }
    if (advance) this.samples = next;
    const forwards: Record<string, ForwardStats> = {};
    for (const f of this.registry.list()) {
      forTenant(f.tenant).connections += f.connections;
      forwards[`${f.tenant} ${f.label}`] = {
        connections: f.connections,
        total_connections: f.totalConnections,
        bytes_in: f.bytesIn,
        bytes_out: f.bytesOut,
      };
    }
    return { time: new Date(now).toISOString(), tenants, forwards };
  }
}

/**
 * One gateway's figures from several processes' (`workers`): a tenant's sessions, connections
 * and rates add up over the workers, and so do a forward's counters when connectors of it sit on
 * more than one worker.
 */
export function mergeStats(
  parts: ReadonlyArray<StatsMessage>,
  time = new Date().toISOString(),
): StatsMessage {
  const tenants: Record<string, TenantStats> = {};
  const forwards: Record<string, ForwardStats> = {};
  for (const p of parts) {
    for (const [id, t] of Object.entries(p.tenants)) {
      const sum = tenants[id] ?? { sessions: 0, connections: 0, in_rate: 0, out_rate: 0 };
      tenants[id] = sum;
      sum.sessions += t.sessions;
      sum.connections += t.connections;
      sum.in_rate += t.in_rate;
      sum.out_rate += t.out_rate;
    }
    for (const [k, f] of Object.entries(p.forwards)) {
      const sum = forwards[k] ?? { connections: 0, total_connections: 0, bytes_in: 0, bytes_out: 0 };
      forwards[k] = sum;
      sum.connections += f.connections;
      sum.total_connections += f.total_connections;
      sum.bytes_in += f.bytes_in;
      sum.bytes_out += f.bytes_out;
    }
  }
  return { time, tenants, forwards };
}
