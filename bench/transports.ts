/**
 * Tunnel transports side by side: plain SSH, SSH inside TLS, SSH inside a WebSocket (wss://),
 * and wss:// through an HTTP proxy (tinyproxy from Debian), on one gateway in the same run.
 *
 *   npx tsc -p tsconfig.build.json && npx tsx bench/transports.ts [--quick]
 *
 * For each transport a real `tether connector run` forwards an echo server and a byte source;
 * measured through the lease ports: download throughput (128 MiB, --quick 64, from the byte source, with the
 * gateway's and connector's CPU seconds per GB) and new connections per second (connect,
 * 1-byte echo, close; 16 at a time). Rounds alternate the order of the transports; the median
 * is reported. About 60 s on an idle machine (--quick: about 20 s). Results: bench/results/transports.json.
 * `npm run bench` calls run({ quick }).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { stringify } from 'yaml';
import { makeCa, makeServerCert } from '../test/helpers/tls-certs.js';
import { type Gateway, type Servers, startGateway, startServers } from './lib/paths.js';
import {
  binLaunch,
  type Child,
  cpuOf,
  freePort,
  load,
  loadgen,
  median,
  ROOT,
  removeTempDirs,
  round,
  sleep,
  start,
  stopAll,
  tempDir,
  waitPort,
} from './lib/procs.js';

const NAMES = ['ssh', 'tls', 'wss', 'wss_proxy'] as const;
type Name = (typeof NAMES)[number];

export interface TransportFigures {
  gateway: string;
  throughput_gbps: number;
  all_gbps: number[];
  /** CPU seconds of gateway + connector per GB moved. */
  cpu_s_per_gb: number;
  connections_per_s: number;
  connection_p99_ms: number;
  connection_errors: number;
}

export interface TransportsReport {
  bench: 'transports';
  date: string;
  quick: boolean;
  mib: number;
  connection_seconds: number;
  rounds: number;
  load_average: [number, number, number];
  transports: Record<Name, TransportFigures>;
  /** Each transport next to plain SSH (1 = as fast). */
  ratios: Record<string, number>;
}

interface Running {
  name: Name;
  gateway: string;
  child: Child;
  echo: number;
  source: number;
}

/** A real connector for one transport; resolves once both its forwards are online. */
async function startTransportConnector(
  gw: Gateway,
  name: Name,
  gateway: string,
  keyFile: string,
  servers: Servers,
  extra: { config?: Record<string, unknown>; env?: Record<string, string> },
): Promise<Running> {
  const dir = tempDir(`tether-bench-${name}-`);
  const group = name.replace('_', '');
  writeFileSync(
    join(dir, 'connect.yaml'),
    stringify({
      gateway,
      tenant: 'bench',
      ssh_key: keyFile,
      gateway_fingerprint: gw.hostFingerprint,
      repositories: {
        [group]: { echo: `tcp://127.0.0.1:${servers.echo}`, source: `tcp://127.0.0.1:${servers.source}` },
      },
      ...extra.config,
    }),
  );
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    https_proxy: '',
    HTTPS_PROXY: '',
    no_proxy: '',
    NO_PROXY: '',
    ...extra.env,
  };
  delete env.TETHER_LOG_LEVEL;
  delete env.TETHER_STATE_DIR;
  delete env.TETHER_CONNECT_CONFIG;
  const launch = binLaunch(['connector', 'run', '-c', join(dir, 'connect.yaml')], env);
  const child = start(process.execPath, launch.args, {
    env: launch.env,
    cwd: dir,
    stdout: 'ignore',
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    const leases = await gw.leases('bench');
    const echo = leases.get(`${group}/echo`);
    const source = leases.get(`${group}/source`);
    if (echo && source) return { name, gateway, child, echo, source };
    if (child.process.exitCode !== null || Date.now() > deadline) {
      throw new Error(`the ${name} connector did not forward (${gateway}): ${child.output().slice(-2000)}`);
    }
    await sleep(100);
  }
}

function startTinyproxy(port: number, connectPort: number): Child {
  const dir = tempDir('tether-bench-proxy-');
  const conf = join(dir, 'tinyproxy.conf');
  writeFileSync(
    conf,
    [
      ...(process.getuid?.() === 0 ? ['User nobody', 'Group nogroup'] : []),
      `Port ${port}`,
      'Listen 127.0.0.1',
      'Timeout 600',
      'MaxClients 1000',
      'Allow 127.0.0.1',
      'LogLevel Warning',
      `ConnectPort ${connectPort}`,
      '',
    ].join('\n'),
  );
  return start('tinyproxy', ['-d', '-c', conf], { stdout: 'ignore' });
}

function table(r: TransportsReport): string {
  const rows = [['transport', 'Gbit/s', 'CPU s/GB', 'conn/s', 'conn p99 ms', 'vs ssh (Gbit/s, conn/s)']];
  for (const n of NAMES) {
    const t = r.transports[n];
    rows.push([
      n.replace('_', '+'),
      String(t.throughput_gbps),
      String(t.cpu_s_per_gb),
      String(t.connections_per_s),
      String(t.connection_p99_ms),
      n === 'ssh'
        ? '-'
        : `${r.ratios[`ratio_throughput_${n}_vs_ssh`]}x, ${r.ratios[`ratio_connections_${n}_vs_ssh`]}x`,
    ]);
  }
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows
    .map((row) => row.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  '))
    .join('\n');
}

/** For `npm run bench` (bench/run.ts), and `npx tsx bench/transports.ts [--quick]`. */
export async function run(o: { quick: boolean }): Promise<TransportsReport> {
  const mib = o.quick ? 64 : 128;
  const connSeconds = o.quick ? 1.5 : 2.5;
  const rounds = o.quick ? 1 : 2;
  const log = (s: string) => process.stdout.write(`${s}\n`);

  const dir = tempDir('tether-bench-certs-');
  const ca = await makeCa(dir, 'Tether Bench CA');
  const cert = await makeServerCert(dir, ca, { names: ['localhost', '127.0.0.1'], file: 'gateway' });
  const port443 = await freePort();
  const both = `127.0.0.1:${port443}`;
  const servers = await startServers();
  const gw = await startGateway({
    config: {
      tunnel: {
        listen: '127.0.0.1:0',
        tls: { listen: both, cert: cert.certFile, key: cert.keyFile },
        websocket: { listen: both, path: '/tunnel', cert: cert.certFile, key: cert.keyFile },
      },
    },
  });
  const proxyPort = await freePort();
  const proxy = startTinyproxy(proxyPort, port443);
  const running: Running[] = [];
  try {
    await waitPort(proxyPort);
    const key = await gw.addTenant('bench');
    const tlsExtra = { config: { gateway_ca: ca.certFile } };
    const plan: Array<[Name, string, { config?: Record<string, unknown>; env?: Record<string, string> }]> = [
      ['ssh', `127.0.0.1:${gw.sshPort}`, {}],
      ['tls', `tls://${both}`, tlsExtra],
      ['wss', `wss://${both}/tunnel`, tlsExtra],
      [
        'wss_proxy',
        `wss://${both}/tunnel`,
        { ...tlsExtra, env: { HTTPS_PROXY: `http://127.0.0.1:${proxyPort}` } },
      ],
    ];
    for (const [name, gateway, extra] of plan) {
      running.push(await startTransportConnector(gw, name, gateway, key, servers, extra));
    }
    const gbps = Object.fromEntries(NAMES.map((n) => [n, [] as number[]])) as Record<Name, number[]>;
    const cpu = Object.fromEntries(NAMES.map((n) => [n, [] as number[]])) as Record<Name, number[]>;
    const conns = Object.fromEntries(
      NAMES.map((n) => [n, [] as Array<{ per_s: number; p99_ms: number; errors: number }>]),
    ) as Record<Name, Array<{ per_s: number; p99_ms: number; errors: number }>>;
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? running : [...running].reverse();
      for (const t of order) {
        const pids = [gw.pid, t.child.pid];
        const c0 = cpuOf(pids);
        const res = await loadgen<{ bytes: number; seconds: number }>([
          'slowread',
          '127.0.0.1',
          t.source,
          mib * 2 ** 20,
          1e12,
        ]);
        const c1 = cpuOf(pids);
        if (res.bytes !== mib * 2 ** 20) throw new Error(`${t.name}: ${res.bytes} of ${mib} MiB arrived`);
        gbps[t.name].push((res.bytes * 8) / res.seconds / 1e9);
        cpu[t.name].push((c1 - c0) / (res.bytes / 1e9));
        conns[t.name].push(
          await loadgen<{ per_s: number; p99_ms: number; errors: number }>([
            'connrate',
            `127.0.0.1:${t.echo}`,
            connSeconds,
            16,
          ]),
        );
        log(
          `   ${t.name.padEnd(9)} ${round(gbps[t.name].at(-1)!, 2)} Gbit/s, ${round(conns[t.name].at(-1)!.per_s, 0)} conn/s`,
        );
      }
    }
    const transports = {} as Record<Name, TransportFigures>;
    for (const t of running) {
      transports[t.name] = {
        gateway: t.gateway,
        throughput_gbps: round(median(gbps[t.name]), 2),
        all_gbps: gbps[t.name].map((x) => round(x, 2)),
        cpu_s_per_gb: round(median(cpu[t.name]), 2),
        connections_per_s: round(median(conns[t.name].map((x) => x.per_s)), 0),
        connection_p99_ms: round(median(conns[t.name].map((x) => x.p99_ms)), 2),
        connection_errors: conns[t.name].reduce((a, x) => a + x.errors, 0),
      };
    }
    const ratios: Record<string, number> = {};
    for (const n of NAMES.filter((x) => x !== 'ssh')) {
      ratios[`ratio_throughput_${n}_vs_ssh`] = round(
        transports[n].throughput_gbps / transports.ssh.throughput_gbps,
        2,
      );
      ratios[`ratio_connections_${n}_vs_ssh`] = round(
        transports[n].connections_per_s / transports.ssh.connections_per_s,
        2,
      );
    }
    const report: TransportsReport = {
      bench: 'transports',
      date: new Date().toISOString(),
      quick: o.quick,
      mib,
      connection_seconds: connSeconds,
      rounds,
      load_average: load().map((x) => round(x, 1)) as [number, number, number],
      transports,
      ratios,
    };
    const out = join(ROOT, 'bench/results');
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'transports.json'), `${JSON.stringify(report, null, 2)}\n`);
    log(table(report));
    return report;
  } finally {
    for (const t of running) await t.child.stop();
    await proxy.stop();
    await gw.stop();
    await servers.child.stop();
  }
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  try {
    await run({ quick });
  } finally {
    await stopAll();
    removeTempDirs();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
  });
}
