import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { SSH_OPTS, type SshForward, sshForward } from '../helpers/openssh.js';
import { startEchoServer, startHttpServer, type TestServer, tcpExchange } from '../helpers/servers.js';
import { PasswordClient, proxyPort, startSshd, type TestSshd } from '../helpers/sshd.js';
import { BIN, run, tempDir, waitFor } from '../helpers/util.js';

interface AuditLine {
  audit: true;
  time: string;
  level: string;
  event: string;
  msg?: string;
  [k: string]: unknown;
}

function readAudit(file: string): AuditLine[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditLine);
}

/** CONNECT through the access proxy; resolves with the status, the tunnel closed at once. */
function connect(port: number, authority: string, auth: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    s.on('error', reject);
    s.on('connect', () =>
      s.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: ${auth}\r\n\r\n`),
    );
    s.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      if (!buf.includes('\r\n\r\n')) return;
      s.destroy();
      resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(buf)?.[1]));
    });
  });
}

describe('audit log', () => {
  let dir: string;
  let auditFile: string;
  let gw: TestGateway;
  let quiet: TestGateway;
  let syslogged: TestGateway;
  let echo: TestServer;
  let syslog: dgram.Socket;
  const datagrams: string[] = [];
  let ssh: SshForward | undefined;

  before(async () => {
    dir = tempDir('tether-audit-');
    auditFile = join(dir, 'logs', 'audit.log');
    syslog = dgram.createSocket('udp4');
    syslog.on('message', (m) => datagrams.push(m.toString()));
    await new Promise<void>((r) => syslog.bind(0, '127.0.0.1', () => r()));
    [gw, quiet, syslogged, echo] = await Promise.all([
      startGateway({
        config: { log: { audit: `file:${auditFile}` }, access_proxy: { listen: '127.0.0.1:0' } },
      }),
      startGateway({ config: { log: { level: 'error', audit: 'stdout' } } }),
      startGateway({
        config: { log: { audit: `syslog://127.0.0.1:${syslog.address().port}?facility=auth` } },
      }),
      startEchoServer(),
    ]);
  });

  after(async () => {
    await ssh?.stop();
    syslog?.close();
    await Promise.all([gw?.stop(), quiet?.stop(), syslogged?.stop(), echo?.close()]);
  });

  test('to a file: tenants, keys, sessions, forwards, connections and front-door logins, without secrets', async () => {
    const proxyPort = Number(
      (await gw.output.wait(/"event":"gateway.started".*"access_proxy":"127\.0\.0\.1:(\d+)"/))[1],
    );
    await gw.addTenant('acme');
    assert.equal((await gw.api('PATCH', '/v1/tenants/acme', { quota: 1 })).status, 200);
    const keyFile = await gw.addTenant('acme', ['-f']); // a new key replaces the old one
    const privateKey = readFileSync(keyFile, 'utf8');
    const fingerprint = (
      (await gw.api('GET', '/v1/tenants/acme')).json as { tenant: { keys: Array<{ fingerprint: string }> } }
    ).tenant.keys[0]!.fingerprint;

    ssh = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'acme',
      keyFile,
      forwards: [
        { label: 'grp/echo', port: echo.port },
        { label: 'grp/two', port: echo.port },
      ],
    });
    const lease = ssh.ports.get('grp/echo')!;
    assert.ok(lease, ssh.stderr.text());
    assert.equal((await tcpExchange(lease, Buffer.alloc(100, 'z'), 100)).length, 100);

    const rotated = await gw.api('POST', '/v1/tenants/acme/groups/grp/key');
    const groupKey = (rotated.json as { key: string }).key;
    const basic = (p: string) => `Basic ${Buffer.from(`acme:${p}`).toString('base64')}`;
    assert.equal(await connect(proxyPort, 'echo.grp.acme:7', basic('not-the-key')), 403);
    assert.equal(await connect(proxyPort, 'echo.grp.acme:7', basic(groupKey)), 200);

    const refused = await run('ssh', [
      ...SSH_OPTS,
      '-i',
      keyFile,
      '-p',
      String(gw.sshPort),
      'nobody@127.0.0.1',
      'true',
    ]);
    assert.notEqual(refused.code, 0);
    await ssh.stop();
    ssh = undefined;
    assert.equal((await gw.api('DELETE', '/v1/tenants/acme')).status, 204);

    const lines = await waitFor(
      () => {
        const l = readAudit(auditFile);
        return l.some((x) => x.event === 'tenant.removed') && l.some((x) => x.event === 'session.closed')
          ? l
          : undefined;
      },
      { what: 'audit lines up to tenant.removed' },
    );
    for (const l of lines) {
      assert.equal(l.audit, true);
      assert.match(l.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.match(l.level, /^(info|warn|error)$/);
    }
    const one = (event: string, match: Record<string, unknown> = {}) => {
      const found = lines.find(
        (l) => l.event === event && Object.entries(match).every(([k, v]) => l[k] === v),
      );
      assert.ok(
        found,
        `${event} ${JSON.stringify(match)} in the audit log:\n${lines.map((l) => l.event).join(' ')}`,
      );
      return found;
    };
    one('tenant.added', { tenant: 'acme', quota: 20 });
    one('tenant.changed', { tenant: 'acme', quota: 1 });
    one('tenant.keys_replaced', { tenant: 'acme', fingerprint });
    one('group_key.rotated', { tenant: 'acme', group: 'grp' });
    const opened = one('session.opened', { tenant: 'acme', fingerprint });
    assert.match(String(opened.source), /^127\.0\.0\.1:\d+$/);
    one('forward.granted', { tenant: 'acme', label: 'grp/echo', port: lease });
    const ref = one('forward.refused', { tenant: 'acme', label: 'grp/two', code: 'TENANT_QUOTA_EXCEEDED' });
    assert.match(String(ref.reason), /quota/);
    one('connection.opened', { tenant: 'acme', label: 'grp/echo', port: lease });
    const closed = one('connection.closed', {
      tenant: 'acme',
      label: 'grp/echo',
      bytes_in: 100,
      bytes_out: 100,
    });
    assert.equal(typeof closed.duration_ms, 'number');
    one('access_proxy.denied', { tenant: 'acme', code: 'WRONG_GROUP_KEY' });
    one('access_proxy.allowed', { tenant: 'acme', repository: 'echo.grp.acme' });
    one('auth.failed', { tenant: 'nobody', reason: 'unknown tenant' });
    const sclosed = one('session.closed', { tenant: 'acme', fingerprint });
    assert.equal(typeof sclosed.duration_ms, 'number');
    one('tenant.removed', { tenant: 'acme' });

    const text = readFileSync(auditFile, 'utf8');
    const secrets = {
      'private key': privateKey.split('\n')[1]!,
      'group key': groupKey,
      'admin token': gw.adminToken,
      'Proxy-Authorization': Buffer.from(`acme:${groupKey}`).toString('base64'),
    };
    for (const [what, s] of Object.entries(secrets))
      assert.ok(!text.includes(s), `the ${what} is not in the audit log`);
  });

  test('to stdout, even when the log level hides info records', async () => {
    await quiet.addTenant('beta');
    const m = await quiet.output.wait(/"event":"tenant.added".*"tenant":"beta"/);
    const line = JSON.parse(m.input) as AuditLine;
    assert.equal(line.audit, true);
    assert.equal(line.level, 'info');
    // With log.level "error" every line on stdout is an audit line.
    const others = quiet.output.lines.filter((l) => l.trim() && !l.includes('"audit":true'));
    assert.deepEqual(others, []);
  });

  test('to syslog over UDP, RFC 5424 with the event as MSGID', async () => {
    await syslogged.addTenant('gamma');
    const msg = await waitFor(() => datagrams.find((d) => d.includes('"event":"tenant.added"')), {
      what: 'tenant.added datagram',
    });
    // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG; auth (4) * 8 + info (6) = 38.
    const m = /^<38>1 \S+Z \S+ tether (\d+) tenant\.added - (\{.*\})\n?$/.exec(msg);
    assert.ok(m, `not RFC 5424: ${msg}`);
    assert.equal(Number(m[1]), syslogged.process.pid);
    const body = JSON.parse(m[2]!) as AuditLine;
    assert.equal(body.tenant, 'gamma');
    assert.ok(
      datagrams.some((d) => / tether \d+ gateway\.started - /.test(d)),
      'gateway.started was sent too',
    );
  });

  test('a bad audit target stops the gateway with a message', async () => {
    const cases: Array<[string, RegExp]> = [
      [
        'kafka://logs:9092',
        /log\.audit: unknown audit target "kafka:\/\/logs:9092"; use "stdout", "stderr", "file:/,
      ],
      [
        'syslog://logs?facility=mail',
        /log\.audit: unknown syslog facility "mail"; use one of user, daemon, auth/,
      ],
      [
        'syslog+tcp://:514',
        /log\.audit: syslog target "syslog\+tcp:\/\/:514" has no host|invalid syslog address/,
      ],
      [
        `file:${join(dir, 'a-file')}/audit.log`,
        /cannot open the audit log file .*a-file\/audit\.log: (ENOTDIR|EEXIST)/,
      ],
    ];
    writeFileSync(join(dir, 'a-file'), 'not a directory');
    for (const [target, message] of cases) {
      const file = join(dir, 'bad.yaml');
      writeFileSync(
        file,
        `data_dir: ${join(dir, 'bad-data')}\ntunnel: { listen: "127.0.0.1:0" }\nadmin: { listen: "127.0.0.1:0" }\nlog:\n  audit: "${target}"\n`,
      );
      const r = await run(process.execPath, [BIN, 'gateway', '-c', file], { timeout: 15_000 });
      assert.equal(r.code, 2, `${target}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, message);
    }
  });
});

describe('audit log: front-door logins, successes and failures', () => {
  let dir: string;
  let auditFile: string;
  let gw: TestGateway;
  let sshd: TestSshd;
  let web: TestServer & { requests: number };
  const SSH_PASSWORD = 'shared-ssh-secret-7f3a';
  const TOKEN = 'tok-alice-91be';

  before(async () => {
    dir = tempDir('tether-audit-fd-');
    auditFile = join(dir, 'audit.log');
    [sshd, web] = await Promise.all([startSshd(), startHttpServer('web')]);
    const hashed = await run(
      process.execPath,
      [BIN, 'http-proxy', 'hash-token', 'alice@example.com', '--cost', '1024'],
      { input: `${TOKEN}\n` },
    );
    assert.equal(hashed.code, 0, hashed.stderr);
    const tokens = join(dir, 'tokens');
    writeFileSync(tokens, `${hashed.stdout.trim()}\n`);
    gw = await startGateway({
      config: {
        log: { audit: `file:${auditFile}` },
        http_proxy: {
          listen: '127.0.0.1:0',
          max_failures: 1000,
          routes: [
            {
              name: 'web',
              path_prefix: '/web',
              to: `http://127.0.0.1:${web.port}`,
              auth: { type: 'basic-token', verify: { type: 'static', file: tokens }, cache_ttl: '5m' },
            },
          ],
        },
        ssh_proxy: {
          listen: '127.0.0.1:0',
          login_throttle: { max_failures: 1000 },
          realms: {
            static: {
              type: 'static',
              credential: SSH_PASSWORD,
              targets: {
                box: [
                  {
                    host: '127.0.0.1',
                    port: sshd.port,
                    user: sshd.user,
                    private_key_file: sshd.clientKeyFile,
                    host_fingerprint: sshd.fingerprint,
                  },
                ],
              },
            },
          },
        },
      },
    });
  });

  after(async () => {
    await gw?.stop();
    await sshd?.stop();
    await web?.close();
  });

  test('one http_proxy.auth_succeeded per verification (not per cached request), ssh_proxy.login.succeeded, and the failures', async () => {
    const started = JSON.parse((await gw.output.wait(/"event":"gateway.started"/)).input) as {
      http_proxy: string;
    };
    const httpPort = Number(started.http_proxy.split(':').pop());
    const get = async (auth: string) => {
      const r = await fetch(`http://127.0.0.1:${httpPort}/web/x`, { headers: { authorization: auth } });
      await r.text();
      return r.status;
    };
    const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
    // Three requests with the right token: one verification, two answers from the cache.
    for (let i = 0; i < 3; i++) assert.equal(await get(basic('alice@example.com', TOKEN)), 200);
    assert.equal(await get(basic('alice@example.com', 'not-the-token')), 401);
    assert.equal(web.requests, 3);

    const client = new PasswordClient(await proxyPort(gw));
    const ok = await client.ssh('static:box/0', SSH_PASSWORD, ['127.0.0.1', 'echo in']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout.trim(), 'in');
    const bad = await client.ssh('static:box/0', 'wrong-ssh-password', ['127.0.0.1', 'true']);
    assert.equal(bad.code, 255);

    const lines = await waitFor(
      () => {
        const l = readAudit(auditFile);
        return l.filter((x) => x.event === 'ssh_proxy.connection.closed').length >= 2 ? l : undefined;
      },
      { what: 'both ssh proxy connections in the audit log' },
    );
    const of = (event: string) => lines.filter((l) => l.event === event);
    const httpOk = of('http_proxy.auth_succeeded');
    assert.equal(httpOk.length, 1, JSON.stringify(httpOk));
    assert.equal(httpOk[0]!.route, 'web');
    assert.equal(httpOk[0]!.user, 'alice@example.com');
    assert.equal(httpOk[0]!.subject, 'alice@example.com');
    assert.equal(httpOk[0]!.target, `http://127.0.0.1:${web.port}`);
    assert.match(String(httpOk[0]!.source), /^(::ffff:)?127\.0\.0\.1$/);
    const httpBad = of('http_proxy.auth_failed');
    assert.equal(httpBad.length, 1);
    assert.equal(httpBad[0]!.user, 'alice@example.com');

    const sshOk = of('ssh_proxy.login.succeeded');
    assert.equal(sshOk.length, 1, JSON.stringify(sshOk));
    assert.equal(sshOk[0]!.user, 'static:box/0');
    assert.equal(sshOk[0]!.realm, 'static');
    assert.equal(sshOk[0]!.target, 'box');
    assert.equal(sshOk[0]!.index, 0);
    assert.match(String(sshOk[0]!.source), /^127\.0\.0\.1:\d+$/);
    const sshBad = of('ssh_proxy.login.failed');
    assert.ok(sshBad.length >= 1);
    assert.equal(sshBad[0]!.code, 'WRONG_PASSWORD');

    const text = readFileSync(auditFile, 'utf8');
    for (const [what, secret] of Object.entries({
      token: TOKEN,
      'wrong token': 'not-the-token',
      'Authorization header': Buffer.from(`alice@example.com:${TOKEN}`).toString('base64'),
      'ssh password': SSH_PASSWORD,
      'wrong ssh password': 'wrong-ssh-password',
    }))
      assert.ok(!text.includes(secret), `the ${what} is not in the audit log`);
  });
});
