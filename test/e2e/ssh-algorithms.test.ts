import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { sshForward } from '../helpers/openssh.js';
import { startEchoServer, type TestServer } from '../helpers/servers.js';
import { proxyPort } from '../helpers/sshd.js';
import { BIN, run, tempDir } from '../helpers/util.js';

/**
 * What an outside SSH auditor (Debian's ssh-audit, scripts/install-test-deps.sh installs it) says
 * about the tunnel port and the SSH front door, and that OpenSSH with its defaults and the Tether
 * connector still log in.
 */

interface Audit {
  code: number | null;
  text: string;
  json: {
    kex: Array<{ algorithm: string }>;
    enc: string[];
    mac: string[];
    key: Array<{ algorithm: string }>;
  };
}

async function sshAudit(port: number): Promise<Audit> {
  const args = ['-n', '-t', '20', '-p', String(port), '127.0.0.1'];
  const text = await run('ssh-audit', args, { timeout: 60_000 });
  const json = await run('ssh-audit', ['-j', ...args], { timeout: 60_000 });
  assert.ok(json.stdout.startsWith('{'), `ssh-audit -j answered: ${json.stdout}${json.stderr}`);
  return { code: text.code, text: text.stdout, json: JSON.parse(json.stdout) as Audit['json'] };
}

/**
 * ssh-audit's verdict: exit 3 is a failure, 2 a warning, 0 clean. Debian 12's ssh-audit 2.5.0
 * does not know kex-strict-s-v00@openssh.com (the Terrapin countermeasure ssh2 advertises) and
 * warns "unknown algorithm" for it; that is the one warning accepted.
 */
function assertClean(a: Audit, where: string): void {
  const fails = a.text.split('\n').filter((l) => l.includes('[fail]'));
  assert.deepEqual(fails, [], `${where}: ssh-audit failures:\n${a.text}`);
  const warns = a.text
    .split('\n')
    .filter(
      (l) => l.includes('[warn]') && !/kex-strict-s-v00@openssh\.com\s+-- \[warn\] unknown algorithm/.test(l),
    );
  assert.deepEqual(warns, [], `${where}: ssh-audit warnings:\n${a.text}`);
  assert.doesNotMatch(a.text, /^\(rec\)/m, `${where}: ssh-audit recommends changes:\n${a.text}`);
  assert.ok(a.code === 0 || a.code === 2, `${where}: ssh-audit exit ${a.code}:\n${a.text}`);
  const kex = a.json.kex.map((k) => k.algorithm);
  for (const bad of [/nistp/, /sha1/, /group1-|group14-sha1/]) {
    assert.ok(!kex.some((k) => bad.test(k)), `${where}: kex offers ${kex.join(',')}`);
  }
  assert.ok(kex.includes('curve25519-sha256'), kex.join(','));
  assert.ok(
    !a.json.mac.some((m) => !m.endsWith('-etm@openssh.com') || m.includes('sha1')),
    a.json.mac.join(','),
  );
  assert.ok(!a.json.enc.some((c) => c.endsWith('-cbc') || c.startsWith('arcfour') || c.startsWith('3des')));
}

describe('SSH algorithms: ssh-audit, OpenSSH and the connector', () => {
  let gw: TestGateway;
  let echo: TestServer;
  let connector: TestConnector;
  let keyFile: string;

  before(async () => {
    echo = await startEchoServer();
    gw = await startGateway({
      config: {
        ssh_proxy: {
          listen: '127.0.0.1:0',
          realms: { t: { type: 'tenant', user: 'nobody', password: 'x' } },
        },
      },
    });
    keyFile = await gw.addTenant('acme');
  });

  after(async () => {
    await connector?.stop();
    await gw?.stop();
    await echo?.close();
  });

  test('ssh-audit: no failure and no warning on the tunnel port', async () => {
    assertClean(await sshAudit(gw.sshPort), 'tunnel port');
  });

  test('ssh-audit: no failure and no warning on the SSH front door', async () => {
    assertClean(await sshAudit(await proxyPort(gw)), 'SSH front door');
  });

  test('OpenSSH with its default algorithms logs in as a connector and carries a connection', async () => {
    const ssh = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'acme',
      keyFile,
      forwards: [{ label: 'g/echo', port: echo.port }],
      extraArgs: ['-F', '/dev/null'],
    });
    try {
      const port = ssh.ports.get('g/echo');
      assert.ok(port, ssh.stderr.text());
      assert.match(ssh.stderr.text(), /kex: algorithm: curve25519-sha256/);
      const reply = await new Promise<string>((resolve, reject) => {
        const s = net.connect({ host: '127.0.0.1', port }, () => s.write('hello\n'));
        s.once('data', (d) => {
          resolve(d.toString());
          s.destroy();
        });
        s.once('error', reject);
      });
      assert.equal(reply, 'hello\n');
    } finally {
      await ssh.stop();
    }
  });

  test('OpenSSH that offers only NIST-curve key exchange is refused in the handshake', async () => {
    const r = await run(
      'ssh',
      [
        '-F',
        '/dev/null',
        '-o',
        'BatchMode=yes',
        '-o',
        'StrictHostKeyChecking=no',
        '-o',
        'UserKnownHostsFile=/dev/null',
        '-o',
        'KexAlgorithms=ecdh-sha2-nistp256',
        '-i',
        keyFile,
        '-p',
        String(gw.sshPort),
        '-N',
        'acme@127.0.0.1',
      ],
      { timeout: 30_000 },
    );
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /no matching key exchange method found/);
  });

  test('the Tether connector logs in with the hardened lists', async () => {
    connector = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile,
      repositories: { g: { echo2: `tcp://127.0.0.1:${echo.port}` } },
    });
    const port = await connector.leasePort('g/echo2');
    assert.ok(port > 0);
  });
});

describe('tunnel.algorithms and ssh_proxy.algorithms in gateway.yaml', () => {
  test('a configured list is what the tunnel port offers', async () => {
    const gw = await startGateway({
      config: { tunnel: { algorithms: { cipher: ['aes256-gcm@openssh.com'], kex: ['curve25519-sha256'] } } },
    });
    try {
      const a = await sshAudit(gw.sshPort);
      assert.deepEqual(a.json.enc, ['aes256-gcm@openssh.com']);
      assert.deepEqual(
        a.json.kex.map((k) => k.algorithm).filter((k) => !k.startsWith('kex-strict')),
        ['curve25519-sha256'],
      );
      assert.deepEqual(a.json.mac, ['hmac-sha2-256-etm@openssh.com', 'hmac-sha2-512-etm@openssh.com']);
    } finally {
      await gw.stop();
    }
  });

  test('an unknown algorithm name is a config error naming the key: exit 2', async () => {
    const dir = tempDir('tether-alg-');
    const file = `${dir}/gateway.yaml`;
    const { writeFileSync } = await import('node:fs');
    writeFileSync(
      file,
      [
        `data_dir: ${dir}/data`,
        'tunnel:',
        '  algorithms:',
        '    kex: [curve25519-sha256, ecdh-sha2-nistp999]',
        'ssh_proxy:',
        '  realms: { t: { type: tenant, user: u, password: p } }',
        '  algorithms: { mac: [] }',
        '  target_algorithms: { cipher: [rot13] }',
        '',
      ].join('\n'),
    );
    const r = await run(process.execPath, [BIN, 'gateway', '-c', file], { timeout: 30_000 });
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /tunnel\.algorithms\.kex\[1\]: unknown kex algorithm "ecdh-sha2-nistp999"; supported: curve25519/,
    );
    assert.match(r.stderr, /ssh_proxy\.algorithms\.mac: list at least one algorithm/);
    assert.match(r.stderr, /ssh_proxy\.target_algorithms\.cipher\[0\]: unknown cipher algorithm "rot13"/);
  });
});
