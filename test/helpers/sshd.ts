import type { ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import type { TestGateway } from './gateway.js';
import { freePort, OutputWatcher, type RunResult, run, spawnTracked, stopProcess, tempDir } from './util.js';

export interface TestSshd {
  port: number;
  dir: string;
  /** The user the proxy logs in as (whoever runs the tests; root in CI). */
  user: string;
  /** `SHA256:…` and `MD5:…` of the sshd's host key, as `ssh-keygen -l` prints them. */
  fingerprint: string;
  md5Fingerprint: string;
  /** A private key the sshd accepts for `user`. */
  clientKeyFile: string;
  clientKey: string;
  /** sshd's log (stderr, `-e`, LogLevel VERBOSE). */
  output: OutputWatcher;
  stop(): Promise<void>;
}

async function keygen(file: string): Promise<void> {
  const r = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'tether-test', '-f', file]);
  if (r.code !== 0) throw new Error(`ssh-keygen failed: ${r.stderr}`);
}

async function fingerprintOf(pubFile: string, hash: 'sha256' | 'md5'): Promise<string> {
  const r = await run('ssh-keygen', ['-l', '-E', hash, '-f', pubFile]);
  if (r.code !== 0) throw new Error(`ssh-keygen -l failed: ${r.stderr}`);
  return r.stdout.split(' ')[1]!;
}

/**
 * Starts a real OpenSSH sshd (`/usr/sbin/sshd -D -e`) on a free loopback port with its own temp
 * host key; it accepts one generated client key (public-key auth only) and serves sftp.
 */
export async function startSshd(opts: { extraConfig?: string[] } = {}): Promise<TestSshd> {
  const dir = tempDir('tether-sshd-');
  const hostKey = join(dir, 'host_key');
  const clientKeyFile = join(dir, 'client_key');
  await keygen(hostKey);
  await keygen(clientKeyFile);
  chmodSync(clientKeyFile, 0o600);
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${clientKeyFile}.pub`));
  // sshd wants its privilege separation directory (absent on a fresh container until the package's service ran once).
  if (!existsSync('/run/sshd')) {
    try {
      mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    } catch {
      // not root: sshd says what it misses
    }
  }
  const port = await freePort();
  const config = join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      'PidFile none',
      'UsePAM no',
      'StrictModes no',
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      'AllowTcpForwarding yes',
      'AcceptEnv TETHER_*',
      'Subsystem sftp internal-sftp',
      'LogLevel VERBOSE',
      ...(opts.extraConfig ?? []),
      '',
    ].join('\n'),
  );
  const p: ChildProcess = spawnTracked('/usr/sbin/sshd', ['-D', '-e', '-f', config], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const output = new OutputWatcher(p.stderr!);
  const exited = new Promise<never>((_, reject) =>
    p.once('exit', (code) => reject(new Error(`sshd exited with ${code}:\n${output.text()}`))),
  );
  exited.catch(() => {});
  await Promise.race([
    output.wait(new RegExp(`Server listening on 127\\.0\\.0\\.1 port ${port}`), 10_000),
    exited,
  ]);
  return {
    port,
    dir,
    user: userInfo().username,
    fingerprint: await fingerprintOf(`${hostKey}.pub`, 'sha256'),
    md5Fingerprint: await fingerprintOf(`${hostKey}.pub`, 'md5'),
    clientKeyFile,
    clientKey: readFileSync(clientKeyFile, 'utf8'),
    output,
    stop: () => stopProcess(p),
  };
}

export interface RunOptions {
  input?: string;
  timeout?: number;
  /** Extra environment, e.g. TETHER_TEST_ASKPASS_DELAY (seconds the askpass script waits). */
  env?: NodeJS.ProcessEnv;
}

/**
 * OpenSSH client programs (ssh, scp, sftp) that log in with a password without a terminal:
 * SSH_ASKPASS with SSH_ASKPASS_REQUIRE=force and a tiny script that prints `secret`.
 */
export class PasswordClient {
  readonly askpass: string;
  /** One line per password prompt shown (the prompt text). */
  readonly askpassLog: string;

  constructor(
    readonly port: number,
    dir = tempDir('tether-askpass-'),
  ) {
    this.askpass = join(dir, 'askpass.sh');
    this.askpassLog = join(dir, 'askpass.log');
    writeFileSync(
      this.askpass,
      [
        '#!/bin/sh',
        // Each prompt is logged, so a test can tell whether (and how often) a password was asked for.
        `printf '%s\\n' "$1" >> '${this.askpassLog}'`,
        'if [ -n "$TETHER_TEST_ASKPASS_DELAY" ]; then sleep "$TETHER_TEST_ASKPASS_DELAY"; fi',
        'printf \'%s\\n\' "$TETHER_TEST_SECRET"',
        '',
      ].join('\n'),
      { mode: 0o700 },
    );
  }

  /** Options every program gets: no user config, no keys, no known_hosts. */
  options(user: string): string[] {
    return [
      '-F',
      '/dev/null',
      '-o',
      `User=${user}`,
      '-o',
      'BatchMode=no',
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'PubkeyAuthentication=no',
      '-o',
      'ConnectTimeout=10',
    ];
  }

  env(secret: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
    return {
      ...process.env,
      SSH_ASKPASS: this.askpass,
      SSH_ASKPASS_REQUIRE: 'force',
      DISPLAY: 'none',
      TETHER_TEST_SECRET: secret,
      ...extra,
    };
  }

  /** How many password prompts were shown so far. */
  prompts(): number {
    if (!existsSync(this.askpassLog)) return 0;
    return readFileSync(this.askpassLog, 'utf8').split('\n').filter(Boolean).length;
  }

  ssh(user: string, secret: string, args: string[], o: RunOptions = {}): Promise<RunResult> {
    const argv = ['-p', String(this.port), ...this.options(user), ...args];
    return run('ssh', argv, { env: this.env(secret, o.env), input: o.input, timeout: o.timeout });
  }

  scp(user: string, secret: string, args: string[], o: RunOptions = {}): Promise<RunResult> {
    const argv = ['-P', String(this.port), ...this.options(user), ...args];
    return run('scp', argv, { env: this.env(secret, o.env), timeout: o.timeout });
  }

  sftp(user: string, secret: string, batchFile: string, o: RunOptions = {}): Promise<RunResult> {
    const argv = ['-P', String(this.port), ...this.options(user), '-b', batchFile, '127.0.0.1'];
    return run('sftp', argv, { env: this.env(secret, o.env), timeout: o.timeout });
  }

  /** Starts a long-running `ssh` (e.g. `-N -L …`); the caller stops it. */
  spawn(user: string, secret: string, args: string[]): ChildProcess {
    return spawnTracked('ssh', ['-p', String(this.port), ...this.options(user), ...args], {
      env: this.env(secret),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  }
}

/** The port of the gateway's `ssh_proxy` (from the `gateway.started` log line). */
export async function proxyPort(gw: TestGateway): Promise<number> {
  const m = await gw.output.wait(/"event":"gateway.started"/);
  const started = JSON.parse(m.input) as { ssh_proxy?: string };
  if (!started.ssh_proxy) throw new Error('the gateway did not start an ssh_proxy');
  return Number(started.ssh_proxy.split(':').pop());
}
