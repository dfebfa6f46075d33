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
    addInto(tenants, p.tenants);
    addInto(forwards, p.forwards);
  }
  return { time, tenants, forwards };
}

/** Adds every figure of each record in `from` to the record under the same key in `into`. */
function addInto<T extends { [K in keyof T]: number }>(
  into: Record<string, T>,
  from: Record<string, T>,
): void {
  for (const [k, v] of Object.entries(from)) {
    const sum = into[k];
    if (!sum) {
      into[k] = { ...v };
      continue;
    }
    for (const f of Object.keys(v) as Array<keyof T>) sum[f] = (sum[f] + v[f]) as T[keyof T];
  }
}
