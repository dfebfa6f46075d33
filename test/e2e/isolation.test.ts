import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import ssh2, { type Client, type ClientChannel } from 'ssh2';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startEchoServer, startHttpServer, type TestServer, tcpExchange } from '../helpers/servers.js';
import { run, waitFor } from '../helpers/util.js';

/** SSH_MSG_CHANNEL_OPEN_FAILURE reason codes (RFC 4254 5.1). */
const PROHIBITED = 1;
const UNKNOWN_CHANNEL_TYPE = 3;

/** Logs in with plain ssh2 (an attacker's client, not our connector) and resolves once ready. */
function login(sshPort: number, username: string, keyFile: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const c = new ssh2.Client();
    c.once('ready', () => resolve(c));
    c.once('error', reject);
    c.connect({
      host: '127.0.0.1',
      port: sshPort,
      username,
      privateKey: readFileSync(keyFile),
      readyTimeout: 20_000,
    });
  });
}

const cb =
  <T>(resolve: (v: { err?: Error; value?: T }) => void) =>
  (err: Error | undefined, value?: T) =>
    resolve({ err: err ?? undefined, value });
const forwardIn = (c: Client, label: string, port: number) =>
  new Promise<{ err?: Error; value?: number }>((r) => c.forwardIn(label, port, cb(r)));
const unforwardIn = (c: Client, label: string, port: number) =>
  new Promise<{ err?: Error }>((r) => c.unforwardIn(label, port, (err) => r({ err: err ?? undefined })));
const forwardOut = (c: Client, host: string, port: number) =>
  new Promise<{ err?: Error; value?: ClientChannel }>((r) =>
    c.forwardOut('127.0.0.1', 5555, host, port, cb(r)),
  );

/** Runs a session request; resolves with what the user sees: an error, or stderr and the exit code. */
function sessionRequest(
  open: (done: (err: Error | undefined, ch?: ClientChannel) => void) => void,
): Promise<{ err?: string; stderr: string; code: number | null }> {
  return new Promise((resolve) => {
    open((err, ch) => {
      if (err || !ch) return resolve({ err: err?.message ?? 'no channel', stderr: '', code: null });
      let stderr = '';
      let code: number | null = null;
      ch.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      ch.on('exit', (c: number | null) => {
        code = c;
      });
      ch.on('data', () => {});
      ch.on('close', () => resolve({ stderr, code }));
    });
  });
}

/**
 * Opens a channel of a type the ssh2 client has no public call for, by borrowing the packet
 * writer it uses for that type on the server side. Resolves with the refusal.
 */
function openOddChannel(
  c: Client,
  type: 'x11' | 'forwarded-tcpip' | 'auth-agent@openssh.com',
): Promise<number | 'opened'> {
  const inner = c as unknown as {
    _chanMgr: { add(cb: unknown): number };
    _protocol: Record<string, (...a: unknown[]) => void> & { _server: boolean };
  };
  return new Promise((resolve) => {
    const wrapper = (err: (Error & { reason?: number }) | undefined, ch?: ClientChannel) => {
      ch?.close();
      resolve(err ? (err.reason ?? -1) : 'opened');
    };
    Object.assign(wrapper, { type });
    const id = inner._chanMgr.add(wrapper);
    const proto = inner._protocol;
    proto._server = true;
    try {
      if (type === 'x11')
        proto.x11!(id, 2 * 1024 * 1024, 32 * 1024, { originAddr: '127.0.0.1', originPort: 6000 });
      else if (type === 'forwarded-tcpip')
        proto.forwardedTcpip!(id, 2 * 1024 * 1024, 32 * 1024, {
          boundAddr: 'grp/web',
          boundPort: 0,
          remoteAddr: '127.0.0.1',
          remotePort: 1,
        });
      else proto.openssh_authAgent!(id, 2 * 1024 * 1024, 32 * 1024);
    } finally {
      proto._server = false;
    }
  });
}

interface ProxyAnswer {
  status: number;
  body: string;
}

/** One CONNECT through the access proxy; resolves with the status and body of the answer. */
function connectVia(proxy: number, authority: string, user: string, key: string): Promise<ProxyAnswer> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: proxy });
    let buf = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer for ${authority}`));
    }, 10_000);
    s.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(buf)?.[1]);
      const len = Number(/content-length: (\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
      if (status !== 200 && buf.length < end + 4 + len) return;
      clearTimeout(timer);
      s.destroy();
      resolve({ status, body: buf.slice(end + 4, end + 4 + len) });
    });
    s.on('error', reject);
    const auth = Buffer.from(`${user}:${key}`).toString('base64');
    s.write(
      `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`,
    );
  });
}

interface TenantJson {
  forwards: Array<{
    label: string;
    port: number;
    state: string;
    service: string | null;
    destination: string | null;
  }>;
  sessions: Array<{ id: string }>;
}

describe('isolation: one tenant against another, and against the gateway itself', () => {
  let gw: TestGateway;
  let acmeWeb: TestServer;
  let echo: TestServer;
  let acme: TestConnector;
  let betaKey: string;
  let beta: Client;
  let proxy: number;
  let webPort: number;
  let dbPort: number;
  const keys: Record<string, string> = {};

  const acmeJson = async () =>
    ((await gw.api('GET', '/v1/tenants/acme')).json as { tenant: TenantJson }).tenant;
  const webStillAcme = async () => {
    const r = await run('curl', ['-sS', '-m', '5', `http://127.0.0.1:${webPort}/probe`]);
    return r.stdout === 'hello from acme /probe\n';
  };

  before(async () => {
    [gw, acmeWeb, echo] = await Promise.all([
      startGateway({ config: { access_proxy: { listen: '127.0.0.1:0', max_failures: 1000 } } }),
      startHttpServer('acme'),
      startEchoServer(),
    ]);
    proxy = Number((await gw.output.wait(/"access_proxy":"127\.0\.0\.1:(\d+)"/))[1]);
    const acmeKey = await gw.addTenant('acme');
    betaKey = await gw.addTenant('beta');
    acme = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile: acmeKey,
      repositories: {
        grp: { web: `http://127.0.0.1:${acmeWeb.port}` },
        other: { db: `tcp://127.0.0.1:${echo.port}` },
      },
    });
    webPort = await acme.leasePort('grp/web');
    dbPort = await acme.leasePort('other/db');
    beta = await login(gw.sshPort, 'beta', betaKey);
    // beta forwards a repository with the same label as acme's, to itself
    const own = await forwardIn(beta, 'grp/web', 0);
    assert.equal(own.err, undefined);
    assert.notEqual(own.value, webPort, "beta's grp/web is not acme's grp/web");
    for (const [tenant, group] of [
      ['acme', 'grp'],
      ['acme', 'other'],
      ['beta', 'grp'],
    ] as const) {
      keys[`${tenant}/${group}`] = await gw.groupKey(tenant, group);
    }
  });
  after(async () => {
    beta?.end();
    await acme?.stop();
    await gw?.stop();
    await acmeWeb?.close();
    await echo?.close();
  });

  test("a tenant cannot take another tenant's lease port, with its label or any other", async () => {
    for (const label of ['grp/web', 'other/db', 'mine/x']) {
      for (const port of [webPort, dbPort]) {
        const r = await forwardIn(beta, label, port);
        assert.ok(r.err, `beta must not get port ${port} as ${label}`);
      }
    }
    // the refusals named only beta's own leases, never the owner: what beta sees on its control channel
    // The log lines reach this test through the gateway's stdout pipe, after the refusals
    // reached beta: wait for them rather than read the lines at this instant.
    const refusals = () =>
      gw.output.lines.filter((l) => l.includes('"forward.refused"') && l.includes('"tenant":"beta"'));
    await waitFor(() => refusals().length >= 6, {
      timeout: 30_000,
      what: 'the refusals in the gateway log',
    }).catch(() => {});
    const log = refusals();
    assert.ok(log.length >= 6, 'each refusal is logged');
    for (const l of log) assert.match(l, /is not this tenant's lease for/);
    for (const l of log) assert.doesNotMatch(l, /acme/);
    assert.ok(await webStillAcme());
  });

  test("a tenant cannot cancel another tenant's forward: not by label, not by port", async () => {
    assert.ok((await unforwardIn(beta, 'other/db', dbPort)).err, 'beta has no other/db to cancel');
    assert.ok((await unforwardIn(beta, 'other/db', 0)).err);
    // cancelling its own grp/web leaves acme's grp/web alone
    assert.equal((await unforwardIn(beta, 'grp/web', 0)).err, undefined);
    assert.ok(await webStillAcme());
    const back = await tcpExchange(dbPort, 'still acme\n', 11);
    assert.equal(back.toString(), 'still acme\n');
    // even a second session of acme itself cannot cancel what the connector's session holds
    const acmeKey = `${gw.dir}/acme.key`;
    const twin = await login(gw.sshPort, 'acme', acmeKey);
    try {
      assert.ok((await unforwardIn(twin, 'grp/web', webPort)).err);
      assert.ok(await webStillAcme());
    } finally {
      twin.end();
    }
    assert.equal((await forwardIn(beta, 'grp/web', 0)).err, undefined, 'beta gets its own back');
  });

  test("a tenant's control messages cannot touch or reveal another tenant's forwards", async () => {
    const ch = await new Promise<ClientChannel>((resolve, reject) =>
      beta.subsys('tether-control', (err, c) => (err ? reject(err) : resolve(c))),
    );
    let text = '';
    ch.on('data', (d: Buffer) => {
      text += d.toString();
    });
    const send = (m: unknown) => ch.write(`${JSON.stringify(m)}\n`);
    send({ type: 'hello', version: 1, agent: 'attacker' });
    send({ type: 'repo', label: 'other/db', service: 'tcp', host: 'evil.example', port: 1 });
    send({ type: 'withdraw', label: 'other/db', reason: 'stolen' });
    send({ type: 'withdraw', label: 'grp/web', reason: 'mine only' });
    send({ type: 'restore', label: 'grp/web' });
    send({ type: 'ping', id: 7 });
    await waitFor(() => text.includes('"pong"'), { what: 'pong' });
    // what beta learned: its own welcome and pong, nothing about acme
    assert.doesNotMatch(text, /acme|other\/db/);
    assert.match(text, /"tenant":"beta"/);
    ch.close();

    const j = await acmeJson();
    const db = j.forwards.find((f) => f.label === 'other/db')!;
    assert.equal(db.service, 'tcp');
    assert.equal(db.destination, `127.0.0.1:${echo.port}`);
    assert.equal(db.state, 'online');
    const back = await tcpExchange(dbPort, 'not withdrawn\n', 14);
    assert.equal(back.toString(), 'not withdrawn\n');
  });

  test("no direct-tcpip into the gateway's network: not to the admin API, a lease port, or a service", async () => {
    const adminPort = Number(gw.adminUrl.split(':').pop());
    for (const [host, port] of [
      ['127.0.0.1', adminPort],
      ['127.0.0.1', webPort],
      ['127.0.0.1', echo.port],
      ['127.0.0.1', gw.sshPort],
      ['localhost', 22],
      ['169.254.169.254', 80],
    ] as const) {
      const r = await forwardOut(beta, host, port);
      assert.ok(r.err, `direct-tcpip to ${host}:${port} must be refused`);
      assert.equal((r.err as Error & { reason?: number }).reason, PROHIBITED, `${host}:${port}`);
    }
    const sock = await new Promise<Error | undefined>((r) =>
      beta.openssh_forwardOutStreamLocal('/var/run/docker.sock', (err) => r(err ?? undefined)),
    );
    assert.ok(sock, 'direct-streamlocal refused');
    const listen = await new Promise<Error | undefined>((r) =>
      beta.openssh_forwardInStreamLocal('/tmp/tether-evil.sock', (err) => r(err ?? undefined)),
    );
    assert.ok(listen, 'streamlocal-forward refused');
  });

  test('no session use: exec, shell, pty, x11, sftp and other subsystems are refused', async () => {
    const refusal = /this gateway only carries port forwards/;
    const exec = await sessionRequest((done) => beta.exec('cat /etc/passwd', done));
    assert.match(exec.stderr, refusal);
    assert.equal(exec.code, 1);
    const shell = await sessionRequest((done) => beta.shell(false, done));
    assert.match(shell.stderr, refusal);
    const pty = await sessionRequest((done) => beta.exec('id', { pty: true }, done));
    assert.match(pty.err ?? '', /pseudo-terminal|pty/i);
    const x11 = await sessionRequest((done) => beta.exec('id', { x11: true }, done));
    assert.match(x11.err ?? '', /X11/i);
    const sftp = await new Promise<Error | undefined>((r) => beta.sftp((err) => r(err ?? undefined)));
    assert.ok(sftp, 'sftp refused');
    const other = await sessionRequest((done) => beta.subsys('netconf', done));
    assert.match(other.stderr, refusal);
    // one control channel per session: the second is refused while the first is open
    const first = await new Promise<ClientChannel>((resolve, reject) =>
      beta.subsys('tether-control', (err, c) => (err ? reject(err) : resolve(c))),
    );
    const second = await sessionRequest((done) => beta.subsys('tether-control', done));
    assert.match(second.stderr, refusal);
    first.close();
  });

  test('channel types the gateway never offers (x11, forwarded-tcpip, auth-agent) are refused', async () => {
    for (const type of ['x11', 'forwarded-tcpip', 'auth-agent@openssh.com'] as const) {
      const r = await openOddChannel(beta, type);
      assert.equal(r, UNKNOWN_CHANNEL_TYPE, `${type} must be refused`);
    }
    assert.ok(await webStillAcme());
  });

  test('the enrollment user logs in with any key but can only enroll: no forward, no channel', async () => {
    const stranger = await login(gw.sshPort, 'tether-enroll', betaKey);
    try {
      assert.ok((await forwardIn(stranger, 'grp/web', 0)).err);
      assert.ok((await forwardIn(stranger, 'grp/web', webPort)).err);
      assert.ok((await forwardOut(stranger, '127.0.0.1', echo.port)).err);
      const exec = await sessionRequest((done) => stranger.exec('id', done));
      assert.match(exec.stderr, /only carries port forwards/);
    } finally {
      stranger.end();
    }
  });

  test("a group key opens its own group only: not another group, not another tenant's same-named group", async () => {
    const ok = await connectVia(proxy, 'web.grp.acme:80', 'acme', keys['acme/grp']!);
    assert.equal(ok.status, 200, 'the right key opens it');
    const wrongKey = (group: string, tenant: string) =>
      `wrong group key for group ${group} of tenant ${tenant}`;
    const notFor = (tenant: string) => `these credentials are not for tenant ${tenant}`;
    const cases: Array<[string, string, string, string]> = [
      ['db.other.acme:1', 'acme', keys['acme/grp']!, wrongKey('other', 'acme')], // another group, same tenant
      ['web.grp.acme:80', 'acme', keys['beta/grp']!, wrongKey('grp', 'acme')], // same-named group of beta
      ['web.grp.acme:80', 'beta', keys['beta/grp']!, notFor('acme')], // beta's own credentials
      ['web.grp.beta:80', 'acme', keys['acme/grp']!, notFor('beta')],
      ['web.grp.beta:80', 'beta', keys['acme/grp']!, wrongKey('grp', 'beta')], // acme's key under beta's name
    ];
    for (const [authority, user, key, message] of cases) {
      const r = await connectVia(proxy, authority, user, key);
      assert.equal(r.status, 403, `${user} → ${authority}`);
      assert.equal(r.body, `${message}\n`);
    }
  });

  test('without the key nobody learns which repositories or tenants exist: one answer for all', async () => {
    const wrong = 'A'.repeat(43);
    // an existing repository, a missing one, a missing group, a missing tenant: the same answer,
    // built only from the names the caller sent
    for (const [repo, group, tenant] of [
      ['web', 'grp', 'acme'],
      ['nope', 'grp', 'acme'],
      ['web', 'nogroup', 'acme'],
      ['web', 'grp', 'ghost'],
    ]) {
      const r = await connectVia(proxy, `${repo}.${group}.${tenant}:80`, tenant!, wrong);
      assert.equal(`${r.status} ${r.body}`, `403 wrong group key for group ${group} of tenant ${tenant}\n`);
    }
  });

  test('the admin API refuses every route without its token, and changes nothing', async () => {
    const routes: Array<[string, string, unknown?]> = [
      ['GET', '/v1/tenants'],
      ['POST', '/v1/tenants', { id: 'mallory' }],
      ['GET', '/v1/tenants/acme'],
      ['PATCH', '/v1/tenants/acme', { quota: 0 }],
      ['DELETE', '/v1/tenants/acme'],
      ['POST', '/v1/tenants/acme/keys', { public_key: 'ssh-ed25519 AAAA' }],
      ['POST', '/v1/tenants/acme/enrollments', {}],
      ['GET', '/v1/tenants/acme/repositories'],
      ['POST', '/v1/tenants/acme/groups/grp/key'],
      ['GET', '/metrics'],
      ['GET', '/v1/events'],
      ['POST', '/v1/events/session'],
    ];
    const auths: Array<Record<string, string>> = [
      {},
      { authorization: 'Bearer wrong' },
      { authorization: `Bearer ${gw.adminToken}x` },
      { authorization: `Bearer ${gw.adminToken.slice(0, -1)}` },
      { authorization: `Basic ${Buffer.from(`admin:${gw.adminToken}`).toString('base64')}` },
      { authorization: gw.adminToken },
      { cookie: `tether_events=${gw.adminToken}` },
    ];
    for (const [method, path, body] of routes) {
      for (const headers of auths) {
        const res = await fetch(`${gw.adminUrl}${path}?token=${gw.adminToken}`, {
          method,
          headers: { 'content-type': 'application/json', ...headers },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        const text = await res.text();
        assert.equal(
          res.status,
          401,
          `${method} ${path} with ${JSON.stringify(headers).slice(0, 40)}: ${text}`,
        );
        assert.doesNotMatch(text, /acme|beta|SHA256:/, 'a refusal reveals nothing');
      }
    }
    // /health is open and says nothing about tenants
    const health = await (await fetch(`${gw.adminUrl}/health`)).text();
    assert.doesNotMatch(health, /acme|beta/);
    const j = await acmeJson();
    assert.ok(
      j.forwards.every((f) => f.state === 'online'),
      'acme untouched',
    );
    const list = (await gw.api('GET', '/v1/tenants')).json as { tenants: Array<{ id: string }> };
    assert.deepEqual(list.tenants.map((t) => t.id).sort(), ['acme', 'beta']);
  });
});
