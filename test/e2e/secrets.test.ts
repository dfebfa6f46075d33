import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import ssh2 from 'ssh2';
import { stringify } from 'yaml';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startHttpServer, type TestServer } from '../helpers/servers.js';
import {
  BIN,
  freePortRange,
  OutputWatcher,
  type RunResult,
  run,
  stopProcess,
  tempDir,
  waitFor,
} from '../helpers/util.js';

/**
 * After a representative flow (gateway, tenants add, enrollment, a real connector, the access
 * proxy with a group key, a rotation, wrong credentials of every kind), no log contains a
 * secret. "Logs" are every process's stdout and stderr, the audit file and every file the
 * connector keeps in its state dir. Outputs whose job is to show a secret once (the private
 * key `tenants add` prints, the token `tenants enroll` prints, the key listings) are not logs
 * and are left out; everything else the CLI printed is searched too.
 */

interface Captured {
  name: string;
  text: () => string;
}

/** Every line of a PEM body long enough to be recognisable, and the whole body joined. */
function pemPieces(pem: string): string[] {
  const body = pem
    .split('\n')
    .filter((l) => l && !l.startsWith('-----'))
    .map((l) => l.trim());
  return [...body.filter((l) => l.length >= 16), body.join('')];
}

function proxyConnect(port: number, authority: string, user: string, key: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    s.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(buf);
      if (m && buf.includes('\r\n\r\n')) {
        if (m[1] === '200') s.write('GET /through HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
        else s.destroy();
        if (m[1] !== '200' || buf.includes('hello from')) resolve(Number(m[1]));
      }
    });
    s.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(buf)?.[1] ?? 0)));
    s.on('error', reject);
    const auth = Buffer.from(`${user}:${key}`).toString('base64');
    s.write(
      `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`,
    );
  });
}

function sshPasswordLogin(port: number, user: string, password: string): Promise<void> {
  return new Promise((resolve) => {
    const c = new ssh2.Client();
    c.on('error', () => resolve());
    c.on('ready', () => {
      c.end();
      resolve();
    });
    c.connect({ host: '127.0.0.1', port, username: user, password, readyTimeout: 20_000 });
  });
}

describe('secrets: nothing secret in any log after a full flow', () => {
  const dir = tempDir('tether-secrets-');
  const dataDir = join(dir, 'data');
  const auditFile = join(dir, 'audit.log');
  const connDir = join(dir, 'connector');
  const captured: Captured[] = [];
  const secrets = new Map<string, string>();
  let gateway: ChildProcess | undefined;
  let conn: TestConnector | undefined;
  let web: TestServer | undefined;

  after(async () => {
    await conn?.stop();
    if (gateway) await stopProcess(gateway);
    await web?.close();
  });

  /** Runs the CLI; its stderr always counts as a log, its stdout unless it is the secret's display. */
  const cli = async (env: NodeJS.ProcessEnv, args: string[], showsSecret = false): Promise<RunResult> => {
    const e: NodeJS.ProcessEnv = { ...process.env, ...env };
    for (const k of ['TETHER_STATE_DIR', 'TETHER_CONNECT_CONFIG']) delete e[k];
    const r = await run(process.execPath, [BIN, ...args], { env: e });
    const name = `tether ${args.slice(0, 3).join(' ')}`;
    captured.push({ name: `${name} (stderr)`, text: () => r.stderr });
    if (!showsSecret) captured.push({ name: `${name} (stdout)`, text: () => r.stdout });
    return r;
  };

  test('a representative flow, then a search of every log for every secret it produced', async (t) => {
    web = await startHttpServer('inside');
    const range = await freePortRange(10);
    const configFile = join(dir, 'gateway.yaml');
    writeFileSync(
      configFile,
      stringify({
        data_dir: dataDir,
        tunnel: { listen: '127.0.0.1:0' },
        admin: { listen: '127.0.0.1:0' },
        forwards: { bind: '127.0.0.1', ports: `${range.low}-${range.high}` },
        access_proxy: { listen: '127.0.0.1:0' },
        log: { level: 'trace', audit: `file:${auditFile}` },
      }),
    );
    gateway = spawn(process.execPath, [BIN, 'gateway', '-c', configFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const gwOut = new OutputWatcher(gateway.stdout!);
    const gwErr = new OutputWatcher(gateway.stderr!);
    captured.push({ name: 'gateway stdout', text: () => gwOut.text() });
    captured.push({ name: 'gateway stderr', text: () => gwErr.text() });
    const started = JSON.parse((await gwOut.wait(/"event":"gateway.started"/, 30_000)).input) as {
      tunnel: string;
      admin: string;
      access_proxy: string;
    };
    const sshPort = Number(started.tunnel.split(':').pop());
    const proxyPort = Number(started.access_proxy.split(':').pop());
    const adminUrl = started.admin;
    const adminToken = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
    secrets.set('admin token', adminToken);
    for (const [i, piece] of pemPieces(readFileSync(join(dataDir, 'host_key'), 'utf8')).entries())
      secrets.set(`gateway host key (${i})`, piece);
    const env = { TETHER_ADMIN_URL: adminUrl, TETHER_ADMIN_TOKEN: adminToken, TETHER_DATA_DIR: dataDir };

    // tenants add: the private key is shown once on stdout, never logged
    const added = await cli(env, ['tenants', 'add', 'acme'], true);
    assert.equal(added.code, 0, added.stderr);
    for (const [i, piece] of pemPieces(added.stdout).entries())
      secrets.set(`tenant private key (${i})`, piece);

    // enrollment: a one-time token, then a connector with its own key
    const enroll = await cli(env, ['tenants', 'enroll', 'acme'], true);
    assert.equal(enroll.code, 0, enroll.stderr);
    const token = enroll.stdout.trim();
    secrets.set('enrollment token', token);
    mkdirSync(connDir, { recursive: true });
    const connCfg = join(connDir, 'connect.yaml');
    const noEnv = {};
    assert.equal(
      (await cli(noEnv, ['connector', 'init', '-c', connCfg, '--gateway', `127.0.0.1:${sshPort}`])).code,
      0,
    );
    const reg = await cli(noEnv, ['connector', 'register', '--token', token, '-c', connCfg]);
    assert.equal(reg.code, 0, reg.stderr);
    const reused = await cli(noEnv, ['connector', 'register', '--token', token, '-c', connCfg]);
    assert.notEqual(reused.code, 0, 'a used token is refused (and the refusal must not log it)');
    const connKey = join(connDir, 'connect_key');
    for (const [i, piece] of pemPieces(readFileSync(connKey, 'utf8')).entries())
      secrets.set(`connector private key (${i})`, piece);

    conn = await startConnector({
      gateway: sshPort,
      tenant: 'acme',
      keyFile: connKey,
      dir: connDir,
      config: { log_level: 'trace' },
      repositories: { grp: { web: `http://127.0.0.1:${web.port}` } },
    });
    captured.push({ name: 'connector stdout', text: () => conn!.output.text() });
    captured.push({ name: 'connector stderr', text: () => conn!.stderr.text() });
    assert.equal((await cli(noEnv, ['connector', 'ping', '-c', connCfg])).code, 0);

    // group key: listed, used, rotated, used again
    const repos = await cli(env, ['tenants', 'repos', 'acme', '--json'], true);
    assert.equal(repos.code, 0, repos.stderr);
    const groupKey = (
      JSON.parse(repos.stdout) as { groups: Array<{ group: string; key: string }> }
    ).groups.find((g) => g.group === 'grp')!.key;
    secrets.set('group key', groupKey);
    secrets.set('Proxy-Authorization with the group key', Buffer.from(`acme:${groupKey}`).toString('base64'));
    assert.equal(await proxyConnect(proxyPort, 'web.grp.acme:80', 'acme', groupKey), 200);
    const rotated = await cli(env, ['tenants', 'rotate-group-key', 'acme', 'grp'], true);
    assert.equal(rotated.code, 0, rotated.stderr);
    const newKey = rotated.stdout.trim();
    assert.notEqual(newKey, groupKey);
    secrets.set('rotated group key', newKey);
    assert.equal(await proxyConnect(proxyPort, 'web.grp.acme:80', 'acme', newKey), 200);

    // wrong credentials of every kind: what was tried is as secret as what is right
    const wrongGroupKey = `${newKey.slice(0, -4)}XXXX`;
    secrets.set('a near-miss group key', wrongGroupKey);
    assert.equal(await proxyConnect(proxyPort, 'web.grp.acme:80', 'acme', wrongGroupKey), 403);
    assert.equal(
      await proxyConnect(proxyPort, 'web.grp.acme:80', 'acme', groupKey),
      403,
      'the old key is refused',
    );
    assert.equal(await proxyConnect(proxyPort, 'web.grp.acme:80', 'acme', adminToken), 403);
    const wrongToken = `${adminToken.slice(0, -6)}ZZZZZZ`;
    secrets.set('a near-miss admin token', wrongToken);
    const denied = await fetch(`${adminUrl}/v1/tenants`, {
      headers: { authorization: `Bearer ${wrongToken}` },
    });
    assert.equal(denied.status, 401);
    const wrongCli = await cli({ ...env, TETHER_ADMIN_TOKEN: wrongToken }, ['tenants', 'list']);
    assert.notEqual(wrongCli.code, 0);
    const password = 'correct horse battery staple 42';
    secrets.set('an SSH password', password);
    await sshPasswordLogin(sshPort, 'acme', password);
    await sshPasswordLogin(sshPort, 'tether-enroll', password);
    const badEnroll = await cli(noEnv, ['connector', 'register', '--token', `${token}x`, '-c', connCfg]);
    assert.notEqual(badEnroll.code, 0);
    secrets.set('a wrong enrollment token', `${token}x`);

    // the connector keeps files in its state dir: all of them are logs, except its own key
    await waitFor(() => existsSync(auditFile) && readFileSync(auditFile, 'utf8').includes('proxy'), {
      what: 'the audit file',
    });
    const stateDir = join(connDir, '.tether-connector');
    for (const f of readdirSync(stateDir)) {
      const p = join(stateDir, f);
      // read now: the pid file and the socket go when the connector stops
      if (!statSync(p).isFile()) continue;
      const content = readFileSync(p, 'utf8');
      captured.push({ name: `connector state ${f}`, text: () => content });
    }
    captured.push({ name: 'connect.yaml', text: () => readFileSync(connCfg, 'utf8') });
    captured.push({ name: 'audit log', text: () => readFileSync(auditFile, 'utf8') });
    captured.push({ name: 'gateway.json', text: () => readFileSync(join(dataDir, 'gateway.json'), 'utf8') });

    await conn.stop();
    await stopProcess(gateway);

    const total = captured.reduce((n, c) => n + c.text().length, 0);
    t.diagnostic(`${secrets.size} secret values searched in ${captured.length} logs (${total} bytes)`);
    // the logs did see the flow: each step left its record
    const logged = `${gwOut.text()}\n${readFileSync(auditFile, 'utf8')}`;
    for (const event of [
      'tenant.added',
      'tenant.enrollment_created',
      'tenant.enrolled',
      'enroll.failed',
      'session.opened',
      'forward.granted',
      'access_proxy.allowed',
      'access_proxy.denied',
      'group_key.rotated',
    ]) {
      assert.ok(logged.includes(`"event":"${event}"`), `${event} is logged`);
    }
    const leaks: string[] = [];
    for (const c of captured) {
      const text = c.text();
      for (const [what, value] of secrets) if (text.includes(value)) leaks.push(`${what} in ${c.name}`);
      if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) leaks.push(`a private key block in ${c.name}`);
    }
    assert.deepEqual(leaks, []);
  });

  test('private keys and tokens are written 0600; the data and state dirs are closed to others', () => {
    for (const file of [
      join(dataDir, 'admin.token'),
      join(dataDir, 'host_key'),
      join(dataDir, 'tether.db'),
      join(dataDir, 'gateway.json'),
      join(connDir, 'connect_key'),
    ]) {
      assert.equal((statSync(file).mode & 0o777).toString(8), '600', file);
    }
    for (const d of [dataDir, join(connDir, '.tether-connector')]) {
      assert.equal((statSync(d).mode & 0o077).toString(8), '0', `${d} is closed to group and others`);
    }
  });
});
