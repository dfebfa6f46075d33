import { type ChildProcess, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { freePort, listening, spawnTracked, tempDir, waitFor } from './util.js';

export const haveSamba =
  spawnSync('smbd', ['--version']).status === 0 && spawnSync('smbclient', ['--version']).status === 0;

/** Samba's smbd on a high loopback port with everything in a temp dir, one guest share. */
export async function startSamba(): Promise<{ port: number; share: string; stop(): Promise<void> }> {
  const dir = tempDir('tether-smb-');
  const share = join(dir, 'share');
  for (const d of ['share', 'private', 'lock', 'state', 'cache', 'pid', 'ncalrpc', 'log'])
    mkdirSync(join(dir, d));
  const port = await freePort();
  const conf = join(dir, 'smb.conf');
  writeFileSync(
    conf,
    `[global]
  smb ports = ${port}
  interfaces = 127.0.0.1
  bind interfaces only = yes
  disable netbios = yes
  server role = standalone server
  private dir = ${dir}/private
  lock directory = ${dir}/lock
  state directory = ${dir}/state
  cache directory = ${dir}/cache
  pid directory = ${dir}/pid
  ncalrpc dir = ${dir}/ncalrpc
  log file = ${dir}/log/smbd.log
  passdb backend = tdbsam:${dir}/private/passdb.tdb
  map to guest = Bad User
  guest account = ${userInfo().username}
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
[share]
  path = ${share}
  guest ok = yes
  read only = no
`,
  );
  const p: ChildProcess = spawnTracked(
    'smbd',
    ['--foreground', '--no-process-group', '--debug-stdout', '-s', conf],
    {
      stdio: 'ignore',
      detached: true,
    },
  );
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  const stop = async () => {
    if (p.exitCode !== null || p.signalCode !== null) return;
    try {
      process.kill(-p.pid!, 'SIGTERM'); // smbd and the children it forked for connections
    } catch {
      p.kill('SIGTERM');
    }
    await exited;
  };
  try {
    await waitFor(
      () => {
        if (p.exitCode !== null) throw new Error(`smbd exited with ${p.exitCode}`);
        return listening(port);
      },
      { timeout: 10_000, what: 'smbd to listen' },
    );
  } catch (e) {
    await stop();
    throw e;
  }
  return { port, share, stop };
}
