import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import {
  BIN,
  binLaunch,
  freePortRange,
  OutputWatcher,
  type RunResult,
  run,
  spawnTracked,
  stopProcess,
  tempDir,
} from './util.js';

export interface StartGatewayOptions {
  /** Extra gateway.yaml keys (merged over the test defaults). */
  config?: Record<string, unknown>;
  /** How many lease ports (default 20). */
  ports?: number;
  env?: NodeJS.ProcessEnv;
  dataDir?: string;
}

export interface TestGateway {
  dir: string;
  dataDir: string;
  configFile: string;
  sshPort: number;
  /** host:port of the tunnel listener, as the gateway printed it. */
  tunnelAddress: string;
  adminUrl: string;
  adminToken: string;
  hostFingerprint: string;
  portRange: { low: number; high: number };
  /** Environment for the CLI to reach this gateway. */
  env: NodeJS.ProcessEnv;
  process: ChildProcess;
  output: OutputWatcher;
  /** What the gateway wrote to stderr (node's own messages: a crash, a warning). */
  errors: OutputWatcher;
  /** Runs the real `tether` CLI against this gateway. */
  tether(args: string[], opts?: { input?: string; env?: NodeJS.ProcessEnv }): Promise<RunResult>;
  /** Adds a tenant and returns the path of its private key file. */
  addTenant(id: string, extraArgs?: string[]): Promise<string>;
  /** The key of a tenant's group, as the admin API lists it (throws when the group is not listed). */
  groupKey(tenant: string, group: string): Promise<string>;
  /** Admin API call with the token. */
  api(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }>;
  /** Under `workers`: the workers' pids, as the primary wrote them to gateway.json (else none). */
  workerPids(): number[];
  /** Sends `signal` to every process of the gateway: the primary and its workers. */
  signalAll(signal: NodeJS.Signals): void;
  stop(): Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts again on the same data dir, tunnel and admin ports. */
  restart(): Promise<void>;
}

/** One connector of a forward, as `GET /v1/tenants/{id}` shows it. */
export interface EndpointView {
  source: string;
  since: string;
  connections: number;
  state: string;
  reason: string | null;
  destination?: string | null;
}

/** A tenant's forward, as `GET /v1/tenants/{id}` shows it. */
export interface ForwardView {
  label: string;
  port: number;
  state: string;
  connectors: number;
  endpoints: EndpointView[];
}

/** The forward `label` of `tenant` from the admin API (undefined while there is none). */
export async function forwardOf(
  gw: TestGateway,
  tenant: string,
  label: string,
): Promise<ForwardView | undefined> {
  const r = await gw.api('GET', `/v1/tenants/${tenant}`);
  return (r.json as { tenant: { forwards: ForwardView[] } }).tenant.forwards.find((f) => f.label === label);
}

function merge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && cur && typeof cur === 'object' && !Array.isArray(cur)
        ? merge(cur as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

/** Starts the real `tether gateway` binary with a temp config on OS-chosen ports. */
export async function startGateway(opts: StartGatewayOptions = {}): Promise<TestGateway> {
  const dir = tempDir('tether-gw-');
  const dataDir = opts.dataDir ?? join(dir, 'data');
  mkdirSync(dataDir, { recursive: true });
  const range = await freePortRange(opts.ports ?? 20);
  let config = merge(
    {
      data_dir: dataDir,
      tunnel: { listen: '127.0.0.1:0' },
      admin: { listen: '127.0.0.1:0' },
      forwards: { bind: '127.0.0.1', ports: `${range.low}-${range.high}` },
    },
    opts.config ?? {},
  );
  // TETHER_TEST_WORKERS=2 runs every gateway of the suite (cluster members too) as a primary and workers
  const workers = process.env.TETHER_TEST_WORKERS;
  if (workers && config.workers === undefined) config = { ...config, workers: Number(workers) };
  // with TETHER_TEST_WORKER_ACCEPT=os the workers accept their connections themselves
  const accept = process.env.TETHER_TEST_WORKER_ACCEPT;
  if (accept && config.worker_accept === undefined) config = { ...config, worker_accept: accept };
  const configFile = join(dir, 'gateway.yaml');
  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env, TETHER_LOG_LEVEL: 'debug' };
  delete env.TETHER_ADMIN_URL;
  delete env.TETHER_ADMIN_TOKEN;

  const gw = {} as TestGateway;
  const launch = async () => {
    writeFileSync(configFile, stringify(config));
    const command = binLaunch(['gateway', '-c', configFile], env);
    const p = spawnTracked(process.execPath, command.args, {
      env: command.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const output = new OutputWatcher(p.stdout!);
    const errOut = new OutputWatcher(p.stderr!);
    const exited = new Promise<never>((_, reject) =>
      p.once('exit', (code) =>
        reject(new Error(`gateway exited with ${code}:\n${output.text()}\n${errOut.text()}`)),
      ),
    );
    exited.catch(() => {});
    // Generous: a loaded machine can take many seconds to start it; an exit still ends the wait at once.
    const m = await Promise.race([output.wait(/"event":"gateway.started"/, 60_000), exited]);
    const started = JSON.parse(m.input) as { tunnel: string; admin: string; host_fingerprint: string };
    gw.process = p;
    gw.output = output;
    gw.errors = errOut;
    gw.sshPort = Number(started.tunnel.split(':').pop());
    gw.tunnelAddress = started.tunnel;
    gw.adminUrl = started.admin;
    gw.hostFingerprint = started.host_fingerprint;
    gw.adminToken = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
    gw.env = {
      ...process.env,
      TETHER_ADMIN_URL: gw.adminUrl,
      TETHER_ADMIN_TOKEN: gw.adminToken,
      TETHER_DATA_DIR: dataDir,
    };
  };
  await launch();
  Object.assign(gw, {
    dir,
    dataDir,
    configFile,
    portRange: range,
    tether: (args: string[], o: { input?: string; env?: NodeJS.ProcessEnv } = {}) =>
      run(process.execPath, [BIN, ...args], { env: { ...gw.env, ...o.env }, input: o.input }),
    addTenant: async (id: string, extraArgs: string[] = []) => {
      const r = await gw.tether(['tenants', 'add', id, ...extraArgs]);
      if (r.code !== 0) throw new Error(`tenants add ${id} failed: ${r.stderr}`);
      const keyFile = join(dir, `${id}.key`);
      writeFileSync(keyFile, r.stdout, { mode: 0o600 });
      return keyFile;
    },
    workerPids: () => {
      const info = JSON.parse(readFileSync(join(dataDir, 'gateway.json'), 'utf8')) as { workers?: string };
      return [...(info.workers ?? '').matchAll(/pids? ([\d, ]+)/g)].flatMap((m) =>
        m[1]!.split(',').map((p) => Number(p.trim())),
      );
    },
    signalAll: (signal: NodeJS.Signals) => {
      for (const pid of [gw.process.pid!, ...gw.workerPids()]) process.kill(pid, signal);
    },
    groupKey: async (tenant: string, group: string) => {
      const r = await gw.api('GET', `/v1/tenants/${tenant}/repositories`);
      const found = (r.json as { groups?: Array<{ group: string; key: string }> }).groups?.find(
        (g) => g.group === group,
      );
      if (!found)
        throw new Error(`group ${group} of ${tenant} not listed (${r.status}): ${JSON.stringify(r.json)}`);
      return found.key;
    },
    api: async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${gw.adminUrl}${path}`, {
        method,
        headers: { authorization: `Bearer ${gw.adminToken}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, json: text ? JSON.parse(text) : undefined };
    },
    stop: () => stopProcess(gw.process),
    kill: async (signal: NodeJS.Signals = 'SIGKILL') => {
      const p = gw.process;
      if (p.exitCode !== null || p.signalCode !== null) return;
      const exited = new Promise<void>((r) => p.once('exit', () => r()));
      p.kill(signal);
      await exited;
    },
    restart: async () => {
      await gw.stop();
      // the same addresses: a member of a test cluster listens on its own loopback address
      const admin = new URL(gw.adminUrl).host;
      const tunnelHost = new URL(`ssh://${gw.tunnelAddress}`).hostname;
      config = merge(config, {
        tunnel: { listen: `${tunnelHost}:${gw.sshPort}` },
        admin: { listen: admin },
      });
      await launch();
    },
  });
  return gw;
}
