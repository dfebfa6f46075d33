import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { controlRequest } from '../../src/connector/control-socket.js';
import type { ConnectorStatus, RepoStatus } from '../../src/connector/status.js';
import {
  BIN,
  binLaunch,
  OutputWatcher,
  type RunResult,
  run,
  spawnTracked,
  stopProcess,
  tempDir,
  waitFor,
} from './util.js';

export type Repositories = Record<string, Record<string, string>>;

export interface ConnectorOptions {
  /** The gateway's SSH port on 127.0.0.1 (or a full "host:port"). */
  gateway: number | string;
  tenant?: string;
  keyFile: string;
  repositories?: Repositories;
  /** Extra connect.yaml keys (gateway_fingerprint, keepalive_interval, …). */
  config?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
  /** Directory for connect.yaml and the state dir (default: a new temp dir). */
  dir?: string;
  /** Wait until connected and every repository is active (default true). */
  waitActive?: boolean;
}

export interface TestConnector {
  dir: string;
  configFile: string;
  stateDir: string;
  process: ChildProcess;
  output: OutputWatcher;
  stderr: OutputWatcher;
  /** Status straight from the control socket. */
  status(): Promise<ConnectorStatus>;
  repo(label: string): Promise<RepoStatus | undefined>;
  /** Lease port of a label, once active. */
  leasePort(label: string, timeout?: number): Promise<number>;
  /** Rewrites connect.yaml with these repositories and `keys` (other keys unchanged). */
  writeRepositories(repos: Repositories, keys?: Record<string, unknown>): void;
  /** Runs the real CLI: `tether connector <args> -c <configFile>`. */
  cli(args: string[]): Promise<RunResult>;
  /** Resolves with the exit code once the process has exited. */
  exited(): Promise<number | null>;
  stop(): Promise<void>;
}

export function connectYaml(o: ConnectorOptions): Record<string, unknown> {
  return {
    gateway: typeof o.gateway === 'number' ? `127.0.0.1:${o.gateway}` : o.gateway,
    ...(o.tenant ? { tenant: o.tenant } : {}),
    ssh_key: o.keyFile,
    keepalive_interval: '2s',
    keepalive_count_max: 3,
    // stopped at once, as a test expects (a test of the drain sets its own)
    drain_timeout: 0,
    ...(o.config ?? {}),
    repositories: o.repositories ?? {},
  };
}

/** Starts the real `tether connector run` with a temp connect.yaml. */
export async function startConnector(o: ConnectorOptions): Promise<TestConnector> {
  const dir = o.dir ?? tempDir('tether-conn-');
  const configFile = join(dir, 'connect.yaml');
  let doc = connectYaml(o);
  writeFileSync(configFile, stringify(doc));
  const stateDir = join(dir, '.tether-connector');
  const env: NodeJS.ProcessEnv = { ...process.env, TETHER_LOG_LEVEL: 'debug', ...o.env };
  delete env.TETHER_STATE_DIR;
  delete env.TETHER_CONNECT_CONFIG;
  const launch = binLaunch(['connector', 'run', '-c', configFile], env);
  const p = spawnTracked(process.execPath, launch.args, {
    env: launch.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = new OutputWatcher(p.stdout!);
  const stderr = new OutputWatcher(p.stderr!);
  const exit = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));

  const c: TestConnector = {
    dir,
    configFile,
    stateDir,
    process: p,
    output,
    stderr,
    status: () => controlRequest(stateDir, 'status', 5000) as Promise<ConnectorStatus>,
    repo: async (label) => (await c.status()).repositories.find((r) => r.label === label),
    leasePort: (label, timeout = 30_000) =>
      waitFor(
        async () => {
          const r = await c.repo(label);
          return r?.state === 'active' ? r.leasePort : null;
        },
        { timeout, what: `an active lease for ${label}` },
      ),
    writeRepositories: (repos, keys = {}) => {
      doc = { ...doc, ...keys, repositories: repos };
      writeFileSync(configFile, stringify(doc));
    },
    cli: (args) => run(process.execPath, [BIN, 'connector', ...args, '-c', configFile], { env }),
    exited: () => exit,
    stop: () => stopProcess(p),
  };
  if (o.waitActive !== false) {
    const labels = Object.entries(o.repositories ?? {}).flatMap(([g, rs]) =>
      Object.keys(rs).map((r) => `${g}/${r}`),
    );
    try {
      await waitFor(
        async () => {
          if (p.exitCode !== null) throw new Error(`connector exited with ${p.exitCode}: ${stderr.text()}`);
          const st = await c.status();
          return (
            st.connected &&
            labels.every((l) => st.repositories.find((r) => r.label === l)?.state === 'active')
          );
        },
        // Generous, as for the gateway: a loaded machine can take many seconds to start the
        // connector and log it in; an exit still ends the wait at once.
        { timeout: 60_000, what: 'the connector to connect and forward every repository' },
      );
    } catch (e) {
      await c.stop();
      throw new Error(
        `${(e as Error).message}\nconnector output:\n${output.lines.slice(-20).join('\n')}\n${stderr.text()}`,
      );
    }
  }
  return c;
}
