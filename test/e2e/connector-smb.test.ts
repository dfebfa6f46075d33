import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { freePort, run, tempDir, waitFor } from '../helpers/util.js';

const haveSamba =
  spawnSync('smbd', ['--version']).status === 0 && spawnSync('smbclient', ['--version']).status === 0;

/** Samba's smbd on a high loopback port with everything in a temp dir, one guest share. */
async function startSamba(): Promise<{ port: number; share: string; stop(): Promise<void> }> {
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
  const p: ChildProcess = spawn(
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
      () =>
        new Promise<boolean>((resolve) => {
          if (p.exitCode !== null) throw new Error(`smbd exited with ${p.exitCode}`);
          const s = net.connect({ host: '127.0.0.1', port });
          s.once('connect', () => {
            s.destroy();
            resolve(true);
          });
          s.once('error', () => resolve(false));
        }),
      { timeout: 10_000, what: 'smbd to listen' },
    );
  } catch (e) {
    await stop();
    throw e;
  }
  return { port, share, stop };
}

describe('connector: SMB through a lease port (Samba)', {
  skip: haveSamba ? false : 'smbd/smbclient not installed',
}, () => {
  let gw: TestGateway;
  let smb: Awaited<ReturnType<typeof startSamba>> | undefined;
  let conn: TestConnector;
  let sambaProblem: string | undefined;

  before(async () => {
    try {
      smb = await startSamba();
    } catch (e) {
      sambaProblem = (e as Error).message;
      return;
    }
    writeFileSync(join(smb.share, 'hello.txt'), 'hello over smb\n');
    gw = await startGateway();
    const keyFile = await gw.addTenant('acme');
    conn = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile,
      repositories: { files: { share: `smb://127.0.0.1:${smb.port}` } },
    });
  });
  after(async () => {
    await conn?.stop();
    await gw?.stop();
    await smb?.stop();
  });

  test('smbclient -p <lease> lists, reads and writes the share', async (t) => {
    if (sambaProblem) return t.skip(`smbd would not start here: ${sambaProblem}`);
    const lease = await conn.leasePort('files/share');
    const dir = tempDir('tether-smbc-');
    const local = join(dir, 'up.txt');
    writeFileSync(local, 'written through the tunnel\n');
    const r = await run(
      'smbclient',
      [
        '-N',
        '-p',
        String(lease),
        '//127.0.0.1/share',
        '-c',
        `ls; get hello.txt ${join(dir, 'got.txt')}; put ${local} up.txt`,
      ],
      { timeout: 20_000 },
    );
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /hello\.txt/);
    assert.equal(readFileSync(join(dir, 'got.txt'), 'utf8'), 'hello over smb\n');
    assert.equal(readFileSync(join(smb!.share, 'up.txt'), 'utf8'), 'written through the tunnel\n');
    const st = await conn.repo('files/share');
    assert.equal(st?.service, 'smb');
    assert.ok(st!.bytesIn > 0 && st!.bytesOut > 0);
  });
});
