/**
 * The three paths a byte can take in the benchmark, each started for real:
 *   direct  — straight to the destination on loopback;
 *   openssh — Debian's sshd on a temp port and `ssh -N -R` (the same cipher as Tether's);
 *   tether  — the real `tether gateway` binary and the real `tether connector run`.
 * Plus the destination servers (bench/lib/servers.mjs) and iperf3 servers.
 */
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import {
  binLaunch,
  type Child,
  freePort,
  freePortRange,
  LIB,
  runOut,
  sleep,
  start,
  tempDir,
  waitPort,
} from './procs.js';

export const CIPHER = 'aes128-gcm@openssh.com';

export interface Servers {
  echo: number;
  http: number;
  source: number;
  child: Child;
}

export async function startServers(cpus?: string): Promise<Servers> {
  const child = start(process.execPath, [join(LIB, 'servers.mjs')], { cpus });
  const m = await child.wait(/^\{.*\}$/);
  return { ...(JSON.parse(m[0]) as { echo: number; http: number; source: number }), child };
}

/** An iperf3 server on a free port (it serves one test at a time). */
export async function startIperf(cpus?: string): Promise<{ port: number; child: Child }> {
  const port = await freePort();
  const child = start('iperf3', ['-s', '-B', '127.0.0.1', '-p', String(port)], { cpus, stdout: 'ignore' });
  await waitPort(port);
  return { port, child };
}

/** A process whose stdout goes to a file (its log is not read back during measurements). */
function startLogged(
  cmd: string,
  args: string[],
  logFile: string,
  opts: { cpus?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Child {
  const fd = openSync(logFile, 'a');
  const c = start(cmd, args, { ...opts, stdout: fd });
  closeSync(fd);
  return c;
}

/** Polls a log file for a line matching `re`. */
async function waitLog(file: string, re: RegExp, child: Child, timeoutMs = 30_000): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = re.exec(readFileSync(file, 'utf8'));
    if (m) return m;
    if (child.process.exitCode !== null || Date.now() > deadline) {
      throw new Error(
        `no line like ${re} in ${file}:\n${readFileSync(file, 'utf8').slice(-3000)}\n${child.output()}`,
      );
    }
    await sleep(50);
  }
}

export interface Gateway {
  dir: string;
  /** host:port of the SSH tunnel listener. */
  tunnel: string;
  sshPort: number;
  adminUrl: string;
  token: string;
  hostFingerprint: string;
  child: Child;
  pid: number;
  logFile: string;
  // biome-ignore lint/suspicious/noExplicitAny: admin API answers, checked where they are used
  api(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }>;
  /** Adds a tenant; returns the path of its private key (generated, or none when `publicKey` is given). */
  addTenant(id: string, publicKey?: string): Promise<string>;
  /** Lease ports of a tenant's online forwards, by label. */
  leases(tenant: string): Promise<Map<string, number>>;
  stop(): Promise<void>;
}

export interface GatewayOptions {
  cpus?: string;
  /** Extra gateway.yaml keys. */
  config?: Record<string, unknown>;
  /** Lease range size (default 50). */
  ports?: number;
  /** Tunnel / admin / lease bind host (default 127.0.0.1). */
  host?: string;
  range?: { low: number; high: number };
  /** Node flags (e.g. --cpu-prof). */
  nodeFlags?: string[];
  /** Another build of the tether binary (A/B comparisons). */
  bin?: string;
}

/** Starts the real `tether gateway` (log level info, as shipped; the log goes to a file). */
export async function startGateway(o: GatewayOptions = {}): Promise<Gateway> {
  const dir = tempDir('tether-bench-gw-');
  const host = o.host ?? '127.0.0.1';
  // a range of its own is released when this gateway stops; a range passed in is the caller's
  const own = o.range ? undefined : await freePortRange(o.ports ?? 50, host);
  const range = o.range ?? own!;
  const config = {
    data_dir: join(dir, 'data'),
    tunnel: { listen: `${host}:0` },
    admin: { listen: `${host}:0` },
    forwards: { bind: host, ports: `${range.low}-${range.high}`, default_quota: 20 },
    ...(o.config ?? {}),
  };
  mkdirSync(join(dir, 'data'));
  writeFileSync(join(dir, 'gateway.yaml'), stringify(config));
  const env = { ...process.env };
  delete env.TETHER_LOG_LEVEL;
  delete env.TETHER_ADMIN_URL;
  delete env.TETHER_ADMIN_TOKEN;
  const logFile = join(dir, 'gateway.log');
  const launch = binLaunch(['gateway', '-c', join(dir, 'gateway.yaml')], env, o);
  const child = startLogged(process.execPath, launch.args, logFile, {
    cpus: o.cpus,
    env: launch.env,
    cwd: dir,
  });
  const m = await waitLog(logFile, /^\{.*"event":"gateway.started".*$/m, child);
  const started = JSON.parse(m[0]) as {
    tunnel: string;
    admin: string;
    host_fingerprint: string;
  };
  const token = readFileSync(join(dir, 'data', 'admin.token'), 'utf8').trim();
  const adminUrl = started.admin;
  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${adminUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : undefined };
  };
  const gw: Gateway = {
    dir,
    tunnel: started.tunnel,
    sshPort: Number(started.tunnel.split(':').pop()),
    adminUrl,
    token,
    hostFingerprint: started.host_fingerprint,
    child,
    pid: child.pid,
    logFile,
    api,
    addTenant: async (id, publicKey) => {
      const r = await api('POST', '/v1/tenants', { id, ...(publicKey ? { public_key: publicKey } : {}) });
      if (r.status !== 201 && r.status !== 200)
        throw new Error(`add tenant ${id}: ${r.status} ${JSON.stringify(r.json)}`);
      if (!r.json.private_key) return '';
      const keyFile = join(dir, `${id}.key`);
      writeFileSync(keyFile, r.json.private_key, { mode: 0o600 });
      return keyFile;
    },
    leases: async (tenant) => {
      const r = await api('GET', `/v1/tenants/${tenant}`);
      const out = new Map<string, number>();
      for (const f of (r.json?.tenant?.forwards ?? []) as Array<{
        label: string;
        port: number;
        state: string;
      }>) {
        if (f.state === 'online') out.set(f.label, f.port);
      }
      return out;
    },
    stop: async () => {
      await child.stop();
      // the memory section starts several gateways of 5,010 ports, one after another
      own?.release();
    },
  };
  return gw;
}

export interface Connector {
  child: Child;
  pid: number;
  /** Lease port per label. */
  ports: Map<string, number>;
  stop(): Promise<void>;
}

/** Starts the real `tether connector run` for `tenant` with `repos` (label → destination port). */
export async function startConnector(
  gw: Gateway,
  tenant: string,
  keyFile: string,
  repos: Record<string, number>,
  o: {
    cpus?: string;
    gateway?: string;
    nodeFlags?: string[];
    bin?: string;
    /** Extra connect.yaml keys. */
    config?: Record<string, unknown>;
  } = {},
): Promise<Connector> {
  const dir = tempDir('tether-bench-conn-');
  const repositories: Record<string, Record<string, string>> = {};
  for (const [label, port] of Object.entries(repos)) {
    const [g, r] = label.split('/') as [string, string];
    repositories[g] ??= {};
    repositories[g][r] = `tcp://127.0.0.1:${port}`;
  }
  writeFileSync(
    join(dir, 'connect.yaml'),
    stringify({
      gateway: o.gateway ?? gw.tunnel,
      tenant,
      ssh_key: keyFile,
      gateway_fingerprint: gw.hostFingerprint,
      ...(o.config ?? {}),
      repositories,
    }),
  );
  const env = { ...process.env };
  delete env.TETHER_LOG_LEVEL;
  delete env.TETHER_STATE_DIR;
  delete env.TETHER_CONNECT_CONFIG;
  const launch = binLaunch(['connector', 'run', '-c', join(dir, 'connect.yaml')], env, o);
  const child = startLogged(process.execPath, launch.args, join(dir, 'connector.log'), {
    cpus: o.cpus,
    env: launch.env,
    cwd: dir,
  });
  const labels = Object.keys(repos);
  const deadline = Date.now() + 30_000;
  let ports = new Map<string, number>();
  while (Date.now() < deadline) {
    ports = await gw.leases(tenant);
    if (labels.every((l) => ports.has(l))) break;
    if (child.process.exitCode !== null) throw new Error(`connector exited: ${child.output()}`);
    await sleep(100);
  }
  if (!labels.every((l) => ports.has(l)))
    throw new Error(`connector did not forward ${labels.join(', ')}: ${child.output()}`);
  return { child, pid: child.pid, ports, stop: () => child.stop() };
}

export interface OpenSsh {
  sshdPid: number;
  /** The sshd's own port (ssh may reach it through a relay, see `via`). */
  sshdPort: number;
  sshPid: number;
  /** Remote-forwarded port per label. */
  ports: Map<string, number>;
  stop(): Promise<void>;
}

/**
 * Debian's sshd on a temp port with a temp host key, and `ssh -N -R` forwarding a loopback port
 * of the sshd host to each destination: a plain OpenSSH reverse tunnel, cipher forced to CIPHER.
 */
export async function startOpenSsh(
  repos: Record<string, number>,
  o: { cpus?: string; via?: (sshdPort: number) => Promise<number> } = {},
): Promise<OpenSsh> {
  const dir = tempDir('tether-bench-sshd-');
  for (const k of ['host_key', 'client_key']) {
    await runOut('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bench', '-f', join(dir, k)]);
  }
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'client_key.pub')));
  try {
    mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  } catch {
    // not root: sshd will say what it misses
  }
  const port = await freePort();
  writeFileSync(
    join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${join(dir, 'host_key')}`,
      'PidFile none',
      'UsePAM no',
      'StrictModes no',
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      'AllowTcpForwarding yes',
      `Ciphers ${CIPHER}`,
      'LogLevel ERROR',
      '',
    ].join('\n'),
  );
  const sshd = start('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')], { cpus: o.cpus });
  await waitPort(port);
  const ports = new Map<string, number>();
  const rArgs: string[] = [];
  for (const [label, dest] of Object.entries(repos)) {
    const p = await freePort();
    ports.set(label, p);
    rArgs.push('-R', `127.0.0.1:${p}:127.0.0.1:${dest}`);
  }
  const ssh = start(
    'ssh',
    [
      '-N',
      '-F',
      '/dev/null',
      '-c',
      CIPHER,
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'BatchMode=yes',
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      'ExitOnForwardFailure=yes',
      '-o',
      'LogLevel=ERROR',
      '-i',
      join(dir, 'client_key'),
      '-p',
      String(o.via ? await o.via(port) : port),
      ...rArgs,
      `${userInfo().username}@127.0.0.1`,
    ],
    { cpus: o.cpus },
  );
  for (const p of ports.values()) await waitPort(p, '127.0.0.1', 20_000);
  return {
    sshdPid: sshd.pid,
    sshdPort: port,
    sshPid: ssh.pid,
    ports,
    stop: async () => {
      await ssh.stop();
      await sshd.stop();
    },
  };
}
