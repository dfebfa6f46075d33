import type { ManagedStatus } from './managed.js';

/**
 * What `tether connector status` shows: the session with the gateway and, per repository,
 * where it goes, its lease port and whether it works.
 */

export type RepoState = 'pending' | 'active' | 'rejected' | 'unreachable';

export interface RepoStatus {
  label: string;
  service: string;
  /** The URI as written in connect.yaml. */
  uri: string;
  /** host:port the connector dials. */
  destination: string;
  /** The gateway port that reaches it (kept while reconnecting, so it shows the last lease). */
  leasePort: number | null;
  state: RepoState;
  /** Why it is rejected or unreachable. */
  reason: string | null;
  /** Connections open right now. */
  connections: number;
  totalConnections: number;
  /** Bytes from the gateway to the destination. */
  bytesIn: number;
  /** Bytes from the destination to the gateway. */
  bytesOut: number;
  /** Connections from the gateway that the destination did not accept. */
  dialFailures: number;
  /** connect.yaml, or managed (proposed by the operator, allowed by the `managed` policy). */
  source?: 'connect.yaml' | 'managed';
}

export interface ConnectorStatus {
  pid: number;
  config: string;
  /** `draining`: stopping, forwards cancelled, carried connections finishing (`drain_timeout`). */
  state: 'connecting' | 'connected' | 'disconnected' | 'draining' | 'stopped' | 'failed';
  connected: boolean;
  gateway: string;
  /** ssh, tls or wss. */
  transport?: 'ssh' | 'tls' | 'wss';
  /** How the session reaches the gateway: transport, proxy, how the TLS certificate is checked. */
  route?: string;
  tenant: string | null;
  /** SHA256 fingerprint of the gateway's host key (the last one seen). */
  fingerprint: string | null;
  /** ISO time: connected since, or disconnected since. */
  since: string | null;
  quota: number | null;
  lastError: string | null;
  /** ISO time of the next reconnect attempt, while disconnected. */
  nextRetryAt: string | null;
  attempts: number;
  repositories: RepoStatus[];
  /** Where `metrics_listen` serves GET /metrics ("http://127.0.0.1:9464/metrics"); null when off. */
  metrics?: string | null;
  /** Managed repositories the gateway proposed, with what this connector made of them. */
  managed?: ManagedStatus[];
  /** Repositories a reload removed whose open connections are still finishing (`drain_timeout`). */
  finishing?: FinishingStatus[];
}

export interface FinishingStatus {
  label: string;
  /** Connections still open. */
  connections: number;
  /** ISO time at which what is still open is cut. */
  cutAt: string;
}

function ago(iso: string | null, now: number): string {
  if (!iso) return '';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  const text =
    s < 60
      ? `${s}s`
      : s < 3600
        ? `${Math.floor(s / 60)}m${s % 60}s`
        : `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  return `${iso} (${text} ago)`;
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = -1;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}

/** The human form of a status. */
export function formatStatus(s: ConnectorStatus, now = Date.now()): string {
  const lines: string[] = [];
  if (s.connected) {
    lines.push(`connected to ${s.gateway} as tenant ${s.tenant ?? '?'} since ${ago(s.since, now)}`);
    if (s.state === 'draining') {
      const open = s.repositories.reduce((n, r) => n + r.connections, 0);
      lines.push(`  STOPPING: forwards cancelled, ${open} open connection(s) finishing (drain_timeout)`);
    }
  } else {
    lines.push(`NOT connected to ${s.gateway} (${s.state}${s.since ? ` since ${ago(s.since, now)}` : ''})`);
    if (s.lastError) lines.push(`  last error: ${s.lastError}`);
    if (s.nextRetryAt) lines.push(`  next attempt: ${s.nextRetryAt} (attempt ${s.attempts + 1})`);
  }
  if (s.route) lines.push(`route: ${s.route}`);
  lines.push(`gateway fingerprint: ${s.fingerprint ?? 'not seen yet'}`);
  if (s.quota !== null) lines.push(`quota: ${s.quota} forwards`);
  lines.push(`pid ${s.pid}, config ${s.config}`);
  if (s.metrics) lines.push(`metrics: ${s.metrics}`);
  for (const f of s.finishing ?? []) {
    lines.push(
      `removed by a reload: ${f.label}, ${f.connections} open connection(s) finishing (cut at ${f.cutAt})`,
    );
  }
  const local = s.repositories.filter((r) => r.source !== 'managed');
  const managed = managedSection(s);
  if (local.length === 0) {
    lines.push('', 'no repositories configured', ...managed);
    return `${lines.join('\n')}\n`;
  }
  const rows = local.map((r) => [
    r.label,
    `${r.service} ${r.destination}`,
    r.leasePort === null ? '-' : String(r.leasePort),
    String(r.connections),
    `${bytes(r.bytesIn)} / ${bytes(r.bytesOut)}`,
    r.state === 'active' || r.state === 'pending' ? r.state : `${r.state}: ${r.reason ?? ''}`,
  ]);
  const head = ['REPOSITORY', 'DESTINATION', 'LEASE', 'CONNS', 'BYTES IN / OUT', 'STATE'];
  lines.push('', ...columns(head, rows), ...managed);
  return `${lines.join('\n')}\n`;
}

/** Managed repositories, apart from connect.yaml's: where each came from and what became of it. */
function managedSection(s: ConnectorStatus): string[] {
  const list = s.managed ?? [];
  if (list.length === 0) return [];
  const served = new Map(s.repositories.filter((r) => r.source === 'managed').map((r) => [r.label, r]));
  const rows = list.map((m) => {
    const r = served.get(m.label);
    const state =
      m.state === 'serving' && r
        ? r.state === 'active'
          ? 'serving'
          : `serving (${r.state}${r.reason ? `: ${r.reason}` : ''})`
        : m.reason
          ? `${m.state}: ${m.reason}`
          : m.state;
    return [
      m.label,
      m.uri,
      r?.leasePort == null ? '-' : String(r.leasePort),
      r ? String(r.connections) : '-',
      `${m.source}`,
      state,
    ];
  });
  const head = ['MANAGED', 'URI', 'LEASE', 'CONNS', 'FROM', 'STATE'];
  return [
    '',
    'managed repositories (proposed by the gateway, checked against managed.allow):',
    ...columns(head, rows),
  ];
}

/** A header and rows as aligned columns (two spaces apart; the last column is not padded). */
function columns(head: string[], rows: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (cols: string[]) =>
    cols
      .map((c, i) => (i === cols.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [fmt(head), ...rows.map(fmt)];
}
