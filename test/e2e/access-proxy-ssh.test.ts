import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { type SshForward, sshForward } from '../helpers/openssh.js';
import { selfSignedCert } from '../helpers/tls-certs.js';
import { freePort, OutputWatcher, run, stopProcess, tempDir } from '../helpers/util.js';

const CLIENT_OPTS = [
  '-o',
  'StrictHostKeyChecking=no',
  '-o',
  'UserKnownHostsFile=/dev/null',
  '-o',
  'BatchMode=yes',
  '-o',
  'IdentitiesOnly=yes',
  '-o',
  'LogLevel=ERROR',
];

/** A real Debian sshd on a free loopback port, with its own host key and one authorized key. */
async function startSshd(
  dir: string,
): Promise<{ port: number; clientKey: string; process: ChildProcess; stop(): Promise<void> }> {
  const hostKey = join(dir, 'host_ed25519');
  const clientKey = join(dir, 'client_ed25519');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', clientKey]);
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${clientKey}.pub`));
  const port = await freePort();
  const config = join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'StrictModes no',
      'UsePAM no',
      'PidFile none',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      'LogLevel VERBOSE',
      '',
    ].join('\n'),
  );
  // sshd insists on its privilege separation directory.
  if (!existsSync('/run/sshd')) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const p = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  const err = new OutputWatcher(p.stderr!);
  await err.wait(/Server listening on 127\.0\.0\.1 port/, 10_000);
  return { port, clientKey, process: p, stop: () => stopProcess(p, 2_000) };
}

describe('access proxy: OpenSSH through HTTP CONNECT to a real sshd behind a connector', () => {
  let gw: TestGateway;
  let proxyPort: number;
  let sshd: Awaited<ReturnType<typeof startSshd>>;
  let fwd: SshForward;
  let conn: TestConnector;
  let tlsSite: https.Server;
  let key: string;

  before(async () => {
    gw = await startGateway({
      config: { access_proxy: { listen: '127.0.0.1:0', verify_upstream_tls: false } },
    });
    proxyPort = Number(
      (await gw.output.wait(/"event":"gateway.started".*"access_proxy":"127\.0\.0\.1:(\d+)"/))[1],
    );
    const dir = tempDir('tether-ap-sshd-');
    sshd = await startSshd(dir);
    const keyFile = await gw.addTenant('acme');
    // Plain OpenSSH as the connector, as the issue asks.
    fwd = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'acme',
      keyFile,
      forwards: [{ label: 'grp/ssh', port: sshd.port }],
    });
    assert.ok(fwd.ports.get('grp/ssh'), 'forward granted');

    // An https repository with a self-signed certificate behind the real connector.
    const tls = selfSignedCert(dir);
    tlsSite = https.createServer({ key: tls.key, cert: tls.cert }, (req, res) =>
      res.end(`tls hello ${req.url} host=${req.headers.host}\n`),
    );
    await new Promise<void>((r) => tlsSite.listen(0, '127.0.0.1', () => r()));
    const tlsPort = (tlsSite.address() as net.AddressInfo).port;
    conn = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile,
      repositories: { grp: { secure: `https://127.0.0.1:${tlsPort}` } },
    });

    key = await gw.groupKey('acme', 'grp');
  });

  after(async () => {
    await fwd?.stop();
    await conn?.stop();
    await gw?.stop();
    await sshd?.stop();
    await new Promise<void>((r) => (tlsSite ? tlsSite.close(() => r()) : r()));
  });

  const proxyCommand = (k: string) =>
    `socat - PROXY:127.0.0.1:%h:%p,proxyport=${proxyPort},proxyauth=acme:${k}`;
  /** The credentials from a file (mode 0600), so the key does not show in the process list. */
  const proxyCommandFile = (k: string) => {
    const file = join(tempDir('tether-ap-cred-'), 'proxy-credentials');
    writeFileSync(file, `acme:${k}`, { mode: 0o600 });
    return `socat - PROXY:127.0.0.1:%h:%p,proxyport=${proxyPort},proxy-authorization-file=${file}`;
  };

  test('ssh -o ProxyCommand="socat - PROXY:…,proxyauth=acme:<key>" root@ssh.grp.acme runs a command', async () => {
    const r = await run(
      'ssh',
      [
        ...CLIENT_OPTS,
        '-i',
        sshd.clientKey,
        '-o',
        `ProxyCommand=${proxyCommand(key)}`,
        '-p',
        '22',
        'root@ssh.grp.acme',
        'echo hello-$((6*7))',
      ],
      { timeout: 30_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello-42\n');
    await gw.output.wait(/"event":"access_proxy.allowed".*"method":"CONNECT".*"repository":"ssh.grp.acme"/);
  });

  test('a 4 MB transfer over ssh through the access proxy arrives intact (credentials from a file: proxy-authorization-file)', async () => {
    const dir = tempDir('tether-ap-data-');
    const file = join(dir, 'data');
    const data = Buffer.alloc(4 * 1024 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7919) & 0xff;
    writeFileSync(file, data);
    const t0 = Date.now();
    const r = await run(
      'sh',
      [
        '-c',
        `ssh ${CLIENT_OPTS.map((o) => `'${o}'`).join(' ')} -i ${sshd.clientKey} -o 'ProxyCommand=${proxyCommandFile(key)}' root@ssh.grp.acme 'sha256sum' < ${file}`,
      ],
      { timeout: 60_000 },
    );
    const ms = Date.now() - t0;
    assert.equal(r.code, 0, r.stderr);
    const want = execFileSync('sha256sum', [file]).toString().split(' ')[0];
    assert.equal(r.stdout.split(' ')[0], want);
    process.stdout.write(`# 4 MiB through ssh via the access proxy in ${ms} ms\n`);
  });

  test('a wrong key: socat reports the 403 (Forbidden) and ssh fails', async () => {
    const r = await run(
      'ssh',
      [
        ...CLIENT_OPTS,
        '-i',
        sshd.clientKey,
        '-o',
        `ProxyCommand=${proxyCommand('wrong-key')}`,
        'root@ssh.grp.acme',
        'true',
      ],
      { timeout: 30_000 },
    );
    assert.equal(r.code, 255);
    assert.match(r.stderr, /CONNECT ssh.grp.acme:22: Forbidden/);
  });

  test('verify_upstream_tls: false lets absolute-form requests reach an https repository with a self-signed certificate', async () => {
    const r = await run('curl', [
      '-sS',
      '-m',
      '10',
      '-x',
      `http://127.0.0.1:${proxyPort}`,
      '-U',
      `acme:${key}`,
      'http://secure.grp.acme/x',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^tls hello \/x host=127\.0\.0\.1:\d+\n$/);
  });
});
