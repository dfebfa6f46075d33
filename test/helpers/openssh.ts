import type { ChildProcess } from 'node:child_process';
import { OutputWatcher, spawnTracked, stopProcess } from './util.js';

export interface SshForward {
  process: ChildProcess;
  stderr: OutputWatcher;
  /** Lease port per label, as OpenSSH printed it ("Allocated port N for remote forward to …"). */
  ports: Map<string, number>;
  stop(): Promise<void>;
}

export const SSH_OPTS = [
  '-o',
  'StrictHostKeyChecking=no',
  '-o',
  'UserKnownHostsFile=/dev/null',
  '-o',
  'LogLevel=DEBUG1',
  '-o',
  'BatchMode=yes',
  '-o',
  'IdentitiesOnly=yes',
];

/**
 * Plain OpenSSH as a connector: `ssh -N -R label:0:host:port …`. Resolves when every forward was
 * answered (granted or refused); `ports` holds the granted ones.
 */
export async function sshForward(opts: {
  sshPort: number;
  tenant: string;
  keyFile: string;
  forwards: Array<{ label: string; port: number; host?: string }>;
  exitOnFailure?: boolean;
  extraArgs?: string[];
}): Promise<SshForward> {
  const args = [
    '-N',
    ...SSH_OPTS,
    '-o',
    `ExitOnForwardFailure=${opts.exitOnFailure ? 'yes' : 'no'}`,
    '-o',
    'ServerAliveInterval=5',
    '-i',
    opts.keyFile,
    '-p',
    String(opts.sshPort),
    ...opts.forwards.flatMap((f) => ['-R', `${f.label}:0:${f.host ?? '127.0.0.1'}:${f.port}`]),
    ...(opts.extraArgs ?? []),
    `${opts.tenant}@127.0.0.1`,
  ];
  const p = spawnTracked('ssh', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const stderr = new OutputWatcher(p.stderr!);
  const ports = new Map<string, number>();
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  // OpenSSH answers forwards in order: "remote forward success for: listen <label>:0, …" followed by
  // "Allocated port N …", or "remote forward failure for: listen <label>:0".
  const answered = (async () => {
    let from = 0;
    for (let i = 0; i < opts.forwards.length; i++) {
      const m = await stderr.wait(/remote forward (success|failure) for: listen (.+?):0,/, 15_000, from);
      from = stderr.lines.indexOf(m.input, from) + 1;
      if (m[1] === 'success') {
        const a = await stderr.wait(/Allocated port (\d+) for remote forward/, 15_000, from);
        from = stderr.lines.indexOf(a.input, from) + 1;
        ports.set(m[2]!, Number(a[1]));
      }
    }
  })();
  await Promise.race([answered, exited.then(() => undefined)]);
  return { process: p, stderr, ports, stop: () => stopProcess(p, 2_000) };
}
