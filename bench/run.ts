/**
 * `npm run bench` — Tether side by side with OpenSSH and direct loopback, in one run.
 *
 *   npm run bench                     full run (about 10 minutes)
 *   npm run bench -- --quick          short version (under a minute)
 *   npm run bench -- --only throughput,latency
 *
 * Sections: throughput (1 and 8 streams), latency, connections, http, slow (slow consumer),
 * memory, cores, cluster, http-proxy (bench/http-proxy.ts), http-tenant (bench/http-tenant.ts) and transports (bench/transports.ts)
 * when those files export `run({ quick })`. Prints a table, writes bench/results/latest.json and
 * bench/results/latest.svg. The machine is shared: every figure is next to its reference from
 * the same run, and the load average is recorded with each section.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type ClusterResult, cluster } from './cluster.js';
import { type ConnectionsResult, connectionRate } from './connections.js';
import { type CoresResult, cores } from './cores.js';
import { type HttpResult, httpRate } from './http.js';
import type { HttpProxyBenchReport } from './http-proxy.js';
import { type LatencyResult, latency } from './latency.js';
import { stopPostgres } from './lib/cluster.js';
import { load, loadgen, ROOT, removeTempDirs, round, stopAll } from './lib/procs.js';
import { type Rig, startRig } from './lib/rig.js';
import { type MemoryResult, memory } from './memory.js';
import { type SlowConsumerResult, slowConsumer } from './slow-consumer.js';
import { type Bar, ratioChart } from './svg.js';
import { iperf, type ThroughputResult, throughput } from './throughput.js';
import { type WanResult, wan } from './wan.js';

const SECTIONS = [
  'throughput',
  'latency',
  'connections',
  'http',
  'slow',
  'memory',
  'cores',
  'cluster',
  'wan',
  'http-proxy',
  'http-tenant',
  'transports',
] as const;
type Section = (typeof SECTIONS)[number];

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    out: { type: 'string', default: join(ROOT, 'bench/results') },
    /** Re-draw the table and the SVG from a results JSON without measuring anything. */
    render: { type: 'string' },
    /** Override the rounds and seconds of the path comparisons (for A/B runs while optimising). */
    rounds: { type: 'string' },
    seconds: { type: 'string' },
  },
});
const quick = args.quick === true;
const only = args.only ? new Set(args.only.split(',')) : undefined;
const want = (s: Section) => (only ? only.has(s) : true);

/** Durations: the full run is about 10 minutes, --quick under one. */
const P = quick
  ? {
      tSeconds: 1,
      tRounds: 1,
      latSeconds: 2,
      connSeconds: 1.5,
      connRounds: 1,
      httpSeconds: 1.5,
      httpRounds: 1,
      slowBytes: 32 * 2 ** 20,
      tenants: 50,
      warmupSeconds: 1,
    }
  : {
      tSeconds: 4,
      tRounds: 3,
      latSeconds: 10,
      connSeconds: 5,
      connRounds: 3,
      httpSeconds: 4,
      httpRounds: 3,
      slowBytes: 2 ** 30,
      tenants: 1000,
      warmupSeconds: 2,
    };

if (args.rounds)
  Object.assign(P, {
    tRounds: Number(args.rounds),
    connRounds: Number(args.rounds),
    httpRounds: Number(args.rounds),
  });
if (args.seconds)
  Object.assign(P, {
    tSeconds: Number(args.seconds),
    connSeconds: Number(args.seconds),
    httpSeconds: Number(args.seconds),
  });

interface External {
  file: string;
  ran: boolean;
  note?: string;
  result?: unknown;
}

interface Results {
  date: string;
  quick: boolean;
  machine: Record<string, unknown>;
  load_average: { start: [number, number, number]; end?: [number, number, number] } & Record<
    string,
    [number, number, number]
  >;
  seconds: Record<string, number>;
  throughput_1?: ThroughputResult;
  throughput_8?: ThroughputResult;
  latency?: LatencyResult;
  connections?: ConnectionsResult;
  http?: HttpResult;
  slow_consumer?: SlowConsumerResult;
  memory?: MemoryResult;
  cores?: CoresResult;
  cluster?: ClusterResult;
  wan?: WanResult;
  http_proxy?: External;
  http_tenant?: External;
  transports?: External;
  errors: Record<string, string>;
  targets: Array<{ name: string; target: string; measured: string; met: boolean | null }>;
}

const log = (s: string) => process.stdout.write(`${s}\n`);
const la = () => load().map((x) => round(x, 1)) as [number, number, number];

async function external(name: string, file: string): Promise<External> {
  const path = join(ROOT, 'bench', file);
  if (!existsSync(path)) return { file, ran: false, note: `bench/${file} is not there yet: skipped` };
  // Importing a script without a `run` export would start its own main(): read it first.
  if (!/export\s+(async\s+)?function\s+run\b|export\s+const\s+run\b/.test(readFileSync(path, 'utf8'))) {
    return { file, ran: false, note: `bench/${file} does not export run({ quick }) yet: skipped` };
  }
  const mod = (await import(`./${file}`)) as { run: (o: { quick: boolean }) => Promise<unknown> };
  log(`-- ${name}: bench/${file}`);
  return { file, ran: true, result: await mod.run({ quick }) };
}

/** Finds numeric ratios (keys starting with "ratio") in an external bench's result, for the chart. */
function ratiosOf(prefix: string, r: unknown): Bar[] {
  if (!r || typeof r !== 'object') return [];
  const out: Bar[] = [];
  for (const [k, v] of Object.entries(r as Record<string, unknown>)) {
    if (typeof v === 'number' && /^ratio/.test(k) && !/p99|latency/.test(k)) {
      out.push({ label: `${prefix}: ${k.replace(/^ratio_?/, '').replace(/_/g, ' ')}`, value: v });
    } else if (v && typeof v === 'object' && !Array.isArray(v)) out.push(...ratiosOf(prefix, v));
  }
  return out;
}

function pad(s: string | number, n: number): string {
  return String(s).padStart(n);
}

/** A row of what the tunnels cost (no figure for direct), with Tether's ratio to OpenSSH. */
function costRow(label: string, v: { openssh: number; tether: number }): string[] {
  return [label, '-', String(v.openssh), String(v.tether), `${round(v.tether / v.openssh)}x`, ''];
}

/** Tether's cost over OpenSSH's, round by round (both measured in the same round). */
function roundRatios(a: { openssh: number[]; tether: number[] }): number[] {
  return a.tether.map((x, i) => round(x / (a.openssh[i] ?? Number.NaN)));
}

/** A cost for every round, both tunnels, with Tether's ratio to OpenSSH in each round. */
function everyRoundRow(label: string, a: { openssh: number[]; tether: number[] }): string[] {
  return [label, '', a.openssh.join(' '), a.tether.join(' '), roundRatios(a).join(' '), ''];
}

function table(r: Results): string {
  const rows: string[][] = [['figure', 'direct', 'OpenSSH', 'Tether', 'Tether/OpenSSH', 'Tether/direct']];
  for (const t of [r.throughput_1, r.throughput_8]) {
    if (!t) continue;
    rows.push([
      `throughput ${t.streams} stream${t.streams > 1 ? 's' : ''}, Gbit/s`,
      String(t.gbps.direct),
      String(t.gbps.openssh),
      String(t.gbps.tether),
      `${t.ratio_tether_openssh}x`,
      `${t.ratio_tether_direct}x`,
    ]);
    rows.push(costRow('  tunnel CPU s per GB', t.cpu_s_per_gb));
    if (t.user_s_per_gb) rows.push(costRow('    of it user (own code)', t.user_s_per_gb));
    if (t.sys_s_per_gb) rows.push(costRow('    of it system (kernel)', t.sys_s_per_gb));
    if (t.all_cpu_s_per_gb) rows.push(everyRoundRow('    CPU s per GB, every round', t.all_cpu_s_per_gb));
  }
  if (r.latency) {
    const l = r.latency.paths;
    for (const k of ['p50_ms', 'p99_ms', 'max_ms'] as const) {
      rows.push([
        `ping-pong 1 KiB @${r.latency.rate}/s ${k.replace('_ms', '')}, ms`,
        String(l.direct[k]),
        String(l.openssh[k]),
        String(l.tether[k]),
        `${round(l.tether[k] / l.openssh[k])}x`,
        `${round(l.tether[k] / l.direct[k])}x`,
      ]);
    }
  }
  if (r.connections) {
    const c = r.connections;
    rows.push([
      'new connections/s (connect, echo, close)',
      String(c.per_s.direct),
      String(c.per_s.openssh),
      String(c.per_s.tether),
      `${c.ratio_tether_openssh}x`,
      `${round(c.per_s.tether / c.per_s.direct)}x`,
    ]);
    rows.push(costRow('  tunnel CPU ms per connection', c.cpu_ms_per_connection));
    if (c.all_cpu_ms_per_connection)
      rows.push(everyRoundRow('    CPU ms per connection, every round', c.all_cpu_ms_per_connection));
  }
  if (r.http) {
    const h = r.http;
    rows.push([
      `HTTP requests/s (${h.connections} conns)`,
      String(h.rps.direct),
      String(h.rps.openssh),
      String(h.rps.tether),
      `${h.ratio_tether_openssh}x`,
      `${h.ratio_tether_direct}x`,
    ]);
    rows.push([
      '  HTTP p99, ms',
      String(h.p99_ms.direct),
      String(h.p99_ms.openssh),
      String(h.p99_ms.tether),
      '',
      '',
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const lines = rows.map((row) =>
    row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : pad(c, widths[i]!))).join('  '),
  );
  lines.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  const extra: string[] = [];
  if (r.memory) {
    const m = r.memory;
    extra.push(
      `memory: idle gateway RSS ${m.idle.rss_idle_mib} MiB (${m.idle.rss_idle_mb} MB; ${m.idle.rss_started_mib} MiB just started), ` +
        `with every front door ${m.idle_front_doors.rss_idle_mib} MiB (${m.idle_front_doors.rss_idle_mb} MB)`,
    );
    extra.push(
      `memory: ${m.tenants} tenants: gateway RSS ${m.rss_base_mib} MiB → ${m.rss_1_forward_mib} MiB (1 forward each) → ${m.rss_5_forwards_mib} MiB (5 each): ` +
        `${m.kib_per_idle_tenant} KiB per idle tenant, ${m.kib_per_further_forward} KiB per further forward` +
        (m.tenants < 500 ? ' (few tenants: heap growth dominates, the full run uses 1,000)' : ''),
    );
  }
  if (r.slow_consumer) {
    const s = r.slow_consumer;
    extra.push(
      `slow consumer: ${round(s.bytes / 2 ** 20, 0)} MiB at ${round(s.achieved_rate / 1e6, 1)} MB/s: gateway RSS +${s.gateway_growth_mib} MiB, connector RSS +${s.connector_growth_mib} MiB`,
    );
  }
  if (r.cores) {
    extra.push(
      `cores: ${r.cores.tenants} tenants in parallel: ${r.cores.runs.map((x) => `${x.gateway_cores} core(s) ${x.gbps} Gbit/s (gateway CPU ${x.gateway_cpu_percent}%)`).join(', ')}: scaling ${r.cores.scaling}x`,
    );
    const w = r.cores.workers;
    if (w)
      extra.push(
        `cores, one gateway: ${w.runs
          .map(
            (x) =>
              `workers ${x.workers}${x.accept === 'os' ? ' (worker_accept: os)' : ''}: ${x.gbps} Gbit/s, gateway CPU ${x.gateway_cpu_percent}%, ${x.conns_per_s} new connections/s (gateway ${x.gateway_ms_per_conn} ms CPU each), sessions ${Object.entries(
                x.sessions_on,
              )
                .map(([k, v]) => `${k} ${v}`)
                .join(' / ')}, idle memory ${x.idle_memory_mib} MiB (RSS summed ${x.idle_rss_mib} MiB)`,
          )
          .join(
            '; ',
          )}: throughput ${w.scaling}x, new connections ${w.conn_scaling}x (worker_accept: os against primary: ${w.os_conns_ratio}x the connections/s at ${w.os_cpu_ratio}x the CPU each), idle memory ${w.memory_ratio}x (${w.memory_how === 'pages' ? 'resident pages, each once' : 'summed PSS'}; summed RSS ${w.rss_ratio}x)${w.note ? ` (${w.note})` : ''}`,
      );
  }
  if (r.cluster) {
    extra.push(
      `cluster: ${r.cluster.runs.map((x) => `${x.members} member(s): ${x.conns_per_s} conns/s, ${x.gbps} Gbit/s down and ${x.gbps_up} up via ${x.throughput_via}`).join('; ')}`,
    );
  }
  for (const l of r.wan?.links ?? []) {
    extra.push(
      `wan ${l.rtt_ms} ms RTT, ${l.rate_mbit} Mbit/s, 1 stream (Mbit/s) download / upload: direct ${l.download_mbit.direct} / ${l.upload_mbit.direct}, OpenSSH ${l.download_mbit.openssh} / ${l.upload_mbit.openssh}, Tether ${l.download_mbit.tether} / ${l.upload_mbit.tether} (${l.ratio_download}x / ${l.ratio_upload}x); CPU s/GB OpenSSH ${l.cpu_s_per_gb.openssh}, Tether ${l.cpu_s_per_gb.tether}`,
    );
  }
  for (const e of [r.http_proxy, r.http_tenant, r.transports]) {
    if (!e) continue;
    const ratios = e.ran ? ratiosOf(e.file, e.result) : [];
    extra.push(
      e.ran
        ? `${e.file}: ${ratios.map((b) => `${b.label.replace(`${e.file}: `, '')} ${round(b.value)}x`).join(', ') || 'ran (see the JSON)'}`
        : `${e.file}: ${e.note}`,
    );
  }
  const targets = r.targets.map(
    (t) =>
      `  [${t.met === null ? ' ? ' : t.met ? 'met' : 'NOT'}] ${t.name}: target ${t.target}, measured ${t.measured}`,
  );
  return [...lines, '', ...extra, '', 'targets:', ...targets].join('\n');
}

function targets(r: Results): Results['targets'] {
  const t: Results['targets'] = [];
  const add = (name: string, target: string, measured: string, met: boolean | null) =>
    t.push({ name, target, measured, met });
  for (const x of [r.throughput_1, r.throughput_8]) {
    if (x)
      add(
        `throughput ${x.streams} stream(s) vs OpenSSH (${'aes128-gcm'})`,
        '>= 1.0x',
        `${x.ratio_tether_openssh}x`,
        x.ratio_tether_openssh >= 1,
      );
  }
  const one = r.throughput_1;
  if (one) {
    // Issue 19's loopback targets: throughput against OpenSSH's median, and CPU per GB in every round.
    add(
      'loopback 1 stream vs OpenSSH (median)',
      '>= 0.9x',
      `${one.ratio_tether_openssh}x`,
      one.ratio_tether_openssh >= 0.9,
    );
    const a = one.all_cpu_s_per_gb;
    if (a) {
      const ratios = roundRatios(a);
      add(
        `loopback 1 stream, tunnel CPU per GB / OpenSSH's, every one of ${ratios.length} rounds`,
        '<= 1.2x',
        `${ratios.join(' ')}x`,
        ratios.length >= 5 ? ratios.every((x) => x <= 1.2) : null,
      );
    }
  }
  if (r.connections) {
    const c = r.connections;
    add('new connections through the tunnel', '>= 2000/s', `${c.per_s.tether}/s`, c.per_s.tether >= 2000);
    add('new connections/s vs OpenSSH', '>= 2x', `${c.ratio_tether_openssh}x`, c.ratio_tether_openssh >= 2);
    add(
      'tunnel CPU per new connection (gateway + connector)',
      '<= 0.6 ms',
      `${c.cpu_ms_per_connection.tether} ms (OpenSSH ${c.cpu_ms_per_connection.openssh} ms)`,
      c.cpu_ms_per_connection.tether <= 0.6,
    );
  }
  if (r.latency)
    add(
      'p99 at 1,000 req/s',
      '<= 3 ms',
      `${r.latency.paths.tether.p99_ms} ms`,
      r.latency.paths.tether.p99_ms <= 3,
    );
  if (r.memory) {
    add(
      'idle gateway RSS (default configuration)',
      '<= 60 MB',
      `${r.memory.idle.rss_idle_mb} MB (with every front door ${r.memory.idle_front_doors.rss_idle_mb} MB)`,
      r.memory.idle.rss_idle_mb <= 60,
    );
    // With few tenants (--quick) heap growth dominates the figures: no verdict.
    const few = r.memory.tenants < 500;
    add(
      'gateway memory per idle tenant',
      '<= 32 KiB',
      `${r.memory.kib_per_idle_tenant} KiB${few ? ` (only ${r.memory.tenants} tenants)` : ''}`,
      few ? null : r.memory.kib_per_idle_tenant <= 32,
    );
    add(
      'gateway memory per further forward',
      '<= 4 KiB',
      `${r.memory.kib_per_further_forward} KiB${few ? ` (only ${r.memory.tenants} tenants)` : ''}`,
      few ? null : r.memory.kib_per_further_forward <= 4,
    );
  }
  if (r.slow_consumer) {
    const g = Math.max(r.slow_consumer.gateway_growth_mib, r.slow_consumer.connector_growth_mib);
    add(
      'slow-consumer RSS growth (gateway, connector)',
      '<= 32 MiB',
      `${r.slow_consumer.gateway_growth_mib} / ${r.slow_consumer.connector_growth_mib} MiB`,
      g <= 32,
    );
  }
  for (const l of r.wan?.links ?? []) {
    const low = Math.min(l.download_mbit.tether, l.upload_mbit.tether);
    if (l.rtt_ms === 50) {
      add('wan 50 ms RTT, 1 stream each way', '>= 900 Mbit/s', `${low} Mbit/s`, low >= 900);
      const ratio = Math.min(l.ratio_download, l.ratio_upload);
      add('wan 50 ms RTT vs OpenSSH', '>= 3x', `${ratio}x`, ratio >= 3);
    }
    if (l.rtt_ms === 100)
      add('wan 100 ms RTT, 1 stream each way', '>= 700 Mbit/s', `${low} Mbit/s`, low >= 700);
  }
  const door = r.http_proxy?.ran ? (r.http_proxy.result as Partial<HttpProxyBenchReport>) : undefined;
  if (door) {
    // Issue 20: both routes (auth none, cached token) against nginx, each the median of its rounds.
    const none = door.ratio_rps_frontdoor_none_vs_nginx ?? 0;
    const token = door.ratio_rps_frontdoor_token_vs_nginx ?? 0;
    add(
      'HTTP front door vs nginx requests/s (auth none, cached token)',
      '>= 0.5x',
      `${none}x, ${token}x (node:http with undici alone ${door.ratio_rps_node_undici_vs_nginx}x)`,
      Math.min(none, token) >= 0.5,
    );
  }
  if (r.cores) add('8 tenants, one core → two', '>= 1.6x', `${r.cores.scaling}x`, r.cores.scaling >= 1.6);
  const wk = r.cores?.workers;
  if (wk) {
    const many = wk.runs[1]!;
    const both = Object.keys(many.sessions_on).length === many.workers;
    add(
      `8 tenants, workers ${many.workers}: every worker carries sessions, gateway above one core`,
      'yes, > 100%',
      `${both ? 'yes' : 'no'}, ${many.gateway_cpu_percent}%`,
      both && many.gateway_cpu_percent > 100,
    );
    add(
      `idle memory, workers ${many.workers} / workers 1`,
      '<= 2x',
      `${wk.memory_ratio}x (summed RSS ${wk.rss_ratio}x)`,
      wk.memory_ratio <= 2,
    );
    if (wk.cpus >= 4)
      add(
        `8 tenants, workers ${many.workers} / workers 1 throughput`,
        '>= 3x (4 workers)',
        `${wk.scaling}x`,
        wk.scaling >= 3,
      );
  }
  return t;
}

function bars(r: Results): Bar[] {
  const b: Bar[] = [];
  for (const x of [r.throughput_1, r.throughput_8]) {
    if (!x) continue;
    const s = `${x.streams} stream${x.streams > 1 ? 's' : ''}`;
    b.push({
      label: `throughput ${s} vs OpenSSH`,
      value: x.ratio_tether_openssh,
      target: 1,
      note: `${x.gbps.tether} vs ${x.gbps.openssh} Gbit/s`,
    });
    b.push({
      label: `throughput ${s} vs direct`,
      value: x.ratio_tether_direct,
      note: `${x.gbps.tether} vs ${x.gbps.direct} Gbit/s`,
    });
  }
  if (r.latency) {
    const l = r.latency.paths;
    b.push({
      label: 'p99 latency vs OpenSSH (inverse)',
      value: l.openssh.p99_ms / l.tether.p99_ms,
      note: `${l.tether.p99_ms} vs ${l.openssh.p99_ms} ms`,
    });
    b.push({
      label: 'p99 latency vs target 3 ms (3 ms ÷ measured)',
      value: 3 / l.tether.p99_ms,
      target: 1,
      note: `${l.tether.p99_ms} ms`,
    });
    b.push({
      label: 'p99 latency vs direct (inverse)',
      value: l.direct.p99_ms / l.tether.p99_ms,
      note: `${l.tether.p99_ms} vs ${l.direct.p99_ms} ms`,
    });
  }
  if (r.connections) {
    const c = r.connections.per_s;
    b.push({
      label: 'new connections/s vs OpenSSH',
      value: c.tether / c.openssh,
      note: `${c.tether} vs ${c.openssh} /s`,
    });
    b.push({
      label: 'new connections/s vs target 2,000',
      value: c.tether / 2000,
      target: 1,
      note: `${c.tether} /s`,
    });
  }
  if (r.http) {
    const h = r.http.rps;
    b.push({
      label: 'HTTP requests/s vs OpenSSH',
      value: h.tether / h.openssh,
      note: `${h.tether} vs ${h.openssh} /s`,
    });
  }
  if (r.memory) {
    b.push({
      label: 'memory per idle tenant (32 KiB ÷ measured)',
      value: 32 / r.memory.kib_per_idle_tenant,
      target: 1,
      note: `${r.memory.kib_per_idle_tenant} KiB`,
    });
    b.push({
      label: 'memory per forward (4 KiB ÷ measured)',
      value: 4 / Math.max(0.1, r.memory.kib_per_further_forward),
      target: 1,
      note: `${r.memory.kib_per_further_forward} KiB`,
    });
  }
  if (r.slow_consumer) {
    const g = Math.max(r.slow_consumer.gateway_growth_mib, r.slow_consumer.connector_growth_mib);
    b.push({
      label: 'slow consumer growth (32 MiB ÷ measured)',
      value: 32 / Math.max(0.5, g),
      target: 1,
      note: `+${g} MiB`,
    });
  }
  if (r.cores)
    b.push({
      label: 'one core → two (8 tenants)',
      value: r.cores.scaling,
      target: 1.6,
      note: `${r.cores.runs.map((x) => `${x.gbps}`).join(' → ')} Gbit/s`,
    });
  if (r.cluster && r.cluster.runs.length === 2) {
    const [a, c] = r.cluster.runs as [ClusterResult['runs'][0], ClusterResult['runs'][0]];
    b.push({
      label: 'cluster 3 members vs 1: conns/s',
      value: c.conns_per_s / a.conns_per_s,
      note: `${c.conns_per_s} vs ${a.conns_per_s} /s`,
    });
    b.push({
      label: 'cluster 3 members vs 1: Gbit/s (relayed)',
      value: c.gbps / a.gbps,
      note: `${c.gbps} vs ${a.gbps} Gbit/s`,
    });
    b.push({
      label: 'cluster 3 members vs 1: Gbit/s up (relayed)',
      value: c.gbps_up / a.gbps_up,
      note: `${c.gbps_up} vs ${a.gbps_up} Gbit/s`,
    });
  }
  if (r.http_proxy?.ran) b.push(...ratiosOf('HTTP front door', r.http_proxy.result));
  if (r.http_tenant?.ran) b.push(...ratiosOf('HTTP to a tenant', r.http_tenant.result));
  if (r.transports?.ran) b.push(...ratiosOf('transports', r.transports.result));
  return b;
}

function chart(r: Results): string {
  return ratioChart(
    `Tether vs OpenSSH and direct loopback${r.quick ? ' (--quick)' : ''}`,
    `${r.date.slice(0, 16).replace('T', ' ')} UTC · ${String(r.machine.cpus)} shared CPUs, load average ${r.load_average.start.join(' ')} → ${r.load_average.end?.join(' ')} · aes128-gcm · medians`,
    bars(r),
  );
}

async function main(): Promise<void> {
  if (args.render) {
    const r = JSON.parse(readFileSync(args.render, 'utf8')) as Results;
    writeFileSync(args.render.replace(/\.json$/, '.svg'), chart(r));
    log(table(r));
    return;
  }
  const started = Date.now();
  const sshV = spawnSync('ssh', ['-V'], { encoding: 'utf8' }).stderr ?? '';
  const r: Results = {
    date: new Date().toISOString(),
    quick,
    machine: {
      cpus: cpus().length,
      model: cpus()[0]?.model,
      kernel: release(),
      node: process.version,
      openssh: sshV.trim(),
      cipher: 'aes128-gcm@openssh.com (both)',
    },
    load_average: { start: la() },
    seconds: {},
    errors: {},
    targets: [],
  };
  log(
    `tether bench${quick ? ' --quick' : ''}: ${cpus().length} CPUs, load average ${la().join(' ')} (the machine is shared: figures are noisy; references are measured in the same run)`,
  );
  const section = async (name: string, fn: () => Promise<void>) => {
    const t0 = Date.now();
    try {
      await fn();
    } catch (e) {
      r.errors[name] = (e as Error).stack ?? String(e);
      log(`!! ${name} failed: ${(e as Error).message}`);
    }
    r.seconds[name] = round((Date.now() - t0) / 1000, 1);
    r.load_average[name] = la();
    log(`   ${name}: ${r.seconds[name]} s, load average ${la().join(' ')}`);
  };

  const rigSections: Section[] = ['throughput', 'latency', 'connections', 'http', 'slow'];
  if (rigSections.some(want)) {
    let rig: Rig | undefined;
    await section('setup', async () => {
      rig = await startRig();
      // Warm-up, not counted: the gateway and connector are fresh processes whose JIT compiles
      // the hot paths during their first seconds of traffic (the first bulk round measured
      // 20-30% below the later ones); a gateway in production runs for weeks. OpenSSH gets
      // the same traffic so both tunnels start from the same state of the machine.
      for (const p of ['openssh', 'tether'] as const) {
        await iperf(rig.ports[p].iperf, 1, P.warmupSeconds);
        await loadgen(['connrate', `127.0.0.1:${rig.ports[p].echo}`, P.warmupSeconds, 16]);
      }
    });
    if (rig) {
      const g = rig;
      if (want('throughput')) {
        await section('throughput', async () => {
          log('-- throughput (iperf3 -R), 1 stream');
          r.throughput_1 = await throughput(g, { streams: 1, seconds: P.tSeconds, rounds: P.tRounds });
          log(`   ${JSON.stringify(r.throughput_1.gbps)}`);
          log('-- throughput, 8 streams');
          r.throughput_8 = await throughput(g, { streams: 8, seconds: P.tSeconds, rounds: P.tRounds });
          log(`   ${JSON.stringify(r.throughput_8.gbps)}`);
        });
      }
      if (want('latency')) {
        await section('latency', async () => {
          log('-- latency: 1 KiB ping-pong at 1,000/s');
          r.latency = await latency(g, { seconds: P.latSeconds });
        });
      }
      if (want('connections')) {
        await section('connections', async () => {
          log('-- new connections per second');
          r.connections = await connectionRate(g, { seconds: P.connSeconds, rounds: P.connRounds });
        });
      }
      if (want('http')) {
        await section('http', async () => {
          log('-- HTTP requests per second');
          r.http = await httpRate(g, { seconds: P.httpSeconds, rounds: P.httpRounds });
        });
      }
      if (want('slow')) {
        await section('slow', async () => {
          log(`-- slow consumer: ${P.slowBytes / 2 ** 20} MiB at 10 MB/s`);
          r.slow_consumer = await slowConsumer(g, { bytes: P.slowBytes });
        });
      }
      await g.stop();
    }
  }
  if (want('memory')) {
    await section('memory', async () => {
      log(`-- memory: ${P.tenants} tenants`);
      r.memory = await memory({ tenants: P.tenants });
    });
  }
  if (!quick || only) {
    if (want('cores')) {
      await section('cores', async () => {
        log('-- cores: 8 tenants, gateway on 1 then 2 cores');
        r.cores = await cores({ seconds: quick ? 2 : 4, rounds: quick ? 1 : 3 });
      });
    }
    if (want('cluster')) {
      await section('cluster', async () => {
        log('-- cluster: 1 and 3 members');
        r.cluster = await cluster({ seconds: quick ? 1.5 : 4, rounds: quick ? 1 : 2 });
      });
    }
    await stopPostgres().catch(() => {});
    if (want('wan')) {
      await section('wan', async () => {
        log('-- wan: one stream each way through a delay relay (1 Gbit/s; 25 and 50 ms one way)');
        r.wan = await wan({
          rounds: quick ? 1 : 3,
          seconds: quick ? 3 : 6,
          delays: quick ? [25] : [25, 50],
          log,
        });
      });
    }
  }
  // The other engineers' benches take half a minute each even when short: the full run has them.
  const externals = !quick || only !== undefined;
  if (!externals) {
    const note = 'skipped in --quick (run without it, or with --only http-proxy,http-tenant,transports)';
    r.http_proxy = { file: 'http-proxy.ts', ran: false, note };
    r.http_tenant = { file: 'http-tenant.ts', ran: false, note };
    r.transports = { file: 'transports.ts', ran: false, note };
  }
  if (externals && want('http-proxy')) {
    await section('http-proxy', async () => {
      r.http_proxy = await external('HTTP front door vs nginx', 'http-proxy.ts');
    });
  }
  if (externals && want('http-tenant')) {
    await section('http-tenant', async () => {
      r.http_tenant = await external('HTTP front door to a tenant over a long link', 'http-tenant.ts');
    });
  }
  if (externals && want('transports')) {
    await section('transports', async () => {
      r.transports = await external('transports', 'transports.ts');
    });
  }
  r.seconds.total = round((Date.now() - started) / 1000, 1);
  r.load_average.end = la();
  r.targets = targets(r);

  mkdirSync(args.out!, { recursive: true });
  const name = only || args.rounds || args.seconds ? 'partial' : quick ? 'quick' : 'latest';
  writeFileSync(join(args.out!, `${name}.json`), `${JSON.stringify(r, null, 2)}\n`);
  const svg = chart(r);
  writeFileSync(join(args.out!, `${name}.svg`), svg);
  log('');
  log(table(r));
  log('');
  log(
    `load average: start ${r.load_average.start.join(' ')}, end ${r.load_average.end!.join(' ')}; total ${r.seconds.total} s`,
  );
  log(`wrote ${join(args.out!, `${name}.json`)} and ${name}.svg`);
  if (Object.keys(r.errors).length > 0) {
    log(`sections that failed: ${Object.keys(r.errors).join(', ')} (details in the JSON)`);
    process.exitCode = 1;
  }
}

try {
  await main();
} finally {
  await stopAll();
  removeTempDirs();
}
