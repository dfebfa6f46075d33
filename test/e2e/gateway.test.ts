// test-timeout: 300000 (eleven tests that each start a gateway and clients; alone under a load average of 28 on 2 cores the first five took 85 s)
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { SSH_OPTS, sshForward } from '../helpers/openssh.js';
import { closedAt, openEcho, startEchoServer, startHttpServer, type TestServer } from '../helpers/servers.js';
import { run, waitFor } from '../helpers/util.js';

interface TenantJson {
  id: string;
  quota: number;
  in_use: number;
  sessions: Array<{ source: string }>;
  forwards: Array<{ label: string; port: number; state: string; connections: number }>;
}

async function tenantJson(gw: TestGateway, id: string): Promise<TenantJson> {
  const r = await gw.tether(['tenants', 'list', id, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as TenantJson;
}

/** The time the gateway logged an event (its decision), from the JSON log line. */
async function eventTime(gw: TestGateway, re: RegExp): Promise<number> {
  const m = await gw.output.wait(re);
  return Date.parse((JSON.parse(m.input) as { time: string }).time);
}

describe('gateway with plain OpenSSH as the connector', () => {
  let gw: TestGateway;
  let http: TestServer;
  let echo: TestServer;
  before(async () => {
    gw = await startGateway();
    http = await startHttpServer('web');
    echo = await startEchoServer();
  });
  after(async () => {
    await gw?.stop();
    await http?.close();
    await echo?.close();
  });

  test('a forward carries HTTP through its lease port, and the listing shows it', async () => {
    const key = await gw.addTenant('acme');
    const fwd = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'acme',
      keyFile: key,
      forwards: [{ label: 'grp/web', port: http.port }],
    });
    try {
      const port = fwd.ports.get('grp/web');
      assert.ok(port && port >= gw.portRange.low && port <= gw.portRange.high, `lease port ${port} in range`);
      const res = await fetch(`http://127.0.0.1:${port}/hello`);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), 'hello from web /hello\n');
      const t = await tenantJson(gw, 'acme');
      assert.equal(t.in_use, 1);
      assert.equal(t.sessions.length, 1);
      assert.match(t.sessions[0]!.source, /^127\.0\.0\.1:\d+$/);
      assert.deepEqual(
        t.forwards.map((f) => [f.label, f.port, f.state]),
        [['grp/web', port, 'online']],
      );
      const table = await gw.tether(['tenants', 'list']);
      assert.match(table.stdout, /acme\s+20\s+1\s+\d{4}-\d\d-\d\d/);
      assert.match(table.stdout, new RegExp(`grp/web\\s+-\\s+${port}\\s+online`));
    } finally {
      await fwd.stop();
    }
    await waitFor(async () => (await tenantJson(gw, 'acme')).forwards[0]?.state === 'offline', {
      what: 'forward offline',
    });
  });

  test('a caller that half-closes still gets the whole answer', async () => {
    const key = await gw.addTenant('halfclose');
    // Answers only after the caller's EOF, like many request/response protocols over raw TCP.
    const srv = net.createServer((s) => {
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('end', () => s.end(Buffer.concat(chunks).reverse()));
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const fwd = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'halfclose',
      keyFile: key,
      forwards: [{ label: 'grp/rev', port: (srv.address() as net.AddressInfo).port }],
    });
    try {
      const answer = await new Promise<string>((resolve, reject) => {
        const s = net.connect({ host: '127.0.0.1', port: fwd.ports.get('grp/rev')! }, () => s.end('abcdef'));
        let got = '';
        s.on('data', (c: Buffer) => {
          got += c.toString();
        });
        s.on('end', () => resolve(got));
        s.on('error', reject);
      });
      assert.equal(answer, 'fedcba');
    } finally {
      await fwd.stop();
      srv.close();
    }
  });

  test('the quota refuses the forward beyond it with the reason, others unaffected', async () => {
    const key = await gw.addTenant('quota1', ['--ports', '1']);
    const fwd = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'quota1',
      keyFile: key,
      forwards: [
        { label: 'grp/a', port: echo.port },
        { label: 'grp/b', port: http.port },
      ],
    });
    try {
      assert.equal(fwd.ports.size, 1);
      await fwd.stderr.wait(/Remote: tether: forward grp\/b refused: quota exceeded \(1 of 1 in use\)/);
      const s = await openEcho(fwd.ports.get('grp/a')!);
      s.destroy();
      const t = await tenantJson(gw, 'quota1');
      assert.equal(t.in_use, 1);
      assert.deepEqual(
        t.forwards.map((f) => f.label),
        ['grp/a'],
      );
      await gw.output.wait(/"event":"forward.refused".*quota exceeded \(1 of 1 in use\)/);
    } finally {
      await fwd.stop();
    }
  });

  test('change 0 ends live connections within 1 s and keeps the tenant out until raised', async () => {
    const key = await gw.addTenant('zero');
    const fwd = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'zero',
      keyFile: key,
      forwards: [{ label: 'grp/echo', port: echo.port }],
    });
    const port = fwd.ports.get('grp/echo')!;
    const s = await openEcho(port);
    const closed = closedAt(s, 10_000);
    const r = await gw.tether(['tenants', 'change', '0', 'zero']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /disabled/);
    // Measured from the gateway's decision, not from the CLI's start-up.
    const cutMs =
      (await closed) - (await eventTime(gw, /"event":"tenant.changed","tenant":"zero","quota":0/));
    assert.ok(cutMs < 1_000, `connection ended ${cutMs} ms after the change`);
    await waitFor(() => fwd.process.exitCode !== null, { what: 'ssh exit', timeout: 5_000 });
    const again = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'zero',
      keyFile: key,
      forwards: [{ label: 'grp/echo', port: echo.port }],
    });
    await waitFor(() => again.process.exitCode !== null, { what: 'refused login' });
    assert.match(again.stderr.text(), /Permission denied/);
    const t = await tenantJson(gw, 'zero');
    assert.equal(t.quota, 0);
    assert.equal(t.forwards[0]?.port, port, 'lease kept while disabled');
    assert.equal((await gw.tether(['tenants', 'change', '5', 'zero'])).code, 0);
    const back = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'zero',
      keyFile: key,
      forwards: [{ label: 'grp/echo', port: echo.port }],
    });
    assert.equal(back.ports.get('grp/echo'), port, 'same lease after re-enabling');
    await back.stop();
  });

  test('remove ends live connections within 1 s, deletes the keys and frees the leases', async () => {
    const key = await gw.addTenant('gone');
    const fwd = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'gone',
      keyFile: key,
      forwards: [{ label: 'grp/echo', port: echo.port }],
    });
    const s = await openEcho(fwd.ports.get('grp/echo')!);
    const closed = closedAt(s, 10_000);
    const r = await gw.tether(['tenants', 'remove', 'gone']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'tenant gone removed');
    const cutMs = (await closed) - (await eventTime(gw, /"event":"tenant.removed","tenant":"gone"/));
    assert.ok(cutMs < 1_000, `connection ended ${cutMs} ms after the removal`);
    const l = await gw.tether(['tenants', 'list', 'gone']);
    assert.equal(l.code, 3);
    assert.match(l.stderr, /tenant "gone" does not exist/);
    const leases = (await gw.api('GET', '/v1/tenants')).json as { tenants: TenantJson[] };
    assert.ok(!leases.tenants.some((t) => t.id === 'gone'));
    const again = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'gone',
      keyFile: key,
      forwards: [{ label: 'grp/echo', port: echo.port }],
    });
    await waitFor(() => again.process.exitCode !== null, { what: 'refused login' });
    assert.match(again.stderr.text(), /Permission denied/);
  });

  test('add -f replaces the keys: the old key is locked out and its sessions end', async () => {
    const oldKey = await gw.addTenant('rot');
    const fwd = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'rot',
      keyFile: oldKey,
      forwards: [{ label: 'grp/echo', port: echo.port }],
    });
    const port = fwd.ports.get('grp/echo')!;
    const dup = await gw.tether(['tenants', 'add', 'rot']);
    assert.equal(dup.code, 4);
    assert.match(dup.stderr, /tenant "rot" already exists \(use -f/);
    const r = await gw.tether(['tenants', 'add', 'rot', '-f']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /BEGIN OPENSSH PRIVATE KEY/);
    await waitFor(() => fwd.process.exitCode !== null, { what: 'old session ended', timeout: 3_000 });
    const oldTry = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'rot',
      keyFile: oldKey,
      forwards: [{ label: 'grp/echo', port: echo.port }],
    });
    await waitFor(() => oldTry.process.exitCode !== null, { what: 'old key refused' });
    assert.match(oldTry.stderr.text(), /Permission denied/);
    const newKey = join(gw.dir, 'rot-new.key');
    writeFileSync(newKey, r.stdout, { mode: 0o600 });
    const ok = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'rot',
      keyFile: newKey,
      forwards: [{ label: 'grp/echo', port: echo.port }],
    });
    assert.equal(ok.ports.get('grp/echo'), port, 'the lease survives a key rotation');
    await ok.stop();
  });

  test('a connector may only forward: shells, commands and direct-tcpip are refused', async () => {
    const key = await gw.addTenant('pivot');
    const base = [...SSH_OPTS, '-i', key, '-p', String(gw.sshPort)];
    const exec = await run('ssh', [...base, 'pivot@127.0.0.1', 'id']);
    assert.notEqual(exec.code, 0);
    assert.match(
      exec.stderr,
      /this gateway only carries port forwards; shells, commands and file transfer are refused/,
    );
    const shell = await run('ssh', [...base, '-T', 'pivot@127.0.0.1']);
    assert.notEqual(shell.code, 0);
    assert.match(shell.stderr, /only carries port forwards/);
    const w = await run('ssh', [...base, '-W', `127.0.0.1:${echo.port}`, 'pivot@127.0.0.1']);
    assert.notEqual(w.code, 0);
    assert.match(w.stderr, /administratively prohibited/);
    const sftp = await run(
      'sftp',
      ['-b', '-', ...SSH_OPTS, '-i', key, '-P', String(gw.sshPort), 'pivot@127.0.0.1'],
      { input: 'ls\n' },
    );
    assert.notEqual(sftp.code, 0);
    assert.match(sftp.stderr, /subsystem request failed/);
  });

  test("an explicit port that is not the tenant's lease is refused", async () => {
    const key = await gw.addTenant('explicit');
    const other = gw.portRange.high;
    const r = await run(
      'ssh',
      [
        '-N',
        ...SSH_OPTS,
        '-o',
        'ExitOnForwardFailure=yes',
        '-i',
        key,
        '-p',
        String(gw.sshPort),
        '-R',
        `grp/x:${other}:127.0.0.1:${echo.port}`,
        'explicit@127.0.0.1',
      ],
      { timeout: 15_000 },
    );
    assert.notEqual(r.code, 0);
    assert.match(
      r.stderr,
      new RegExp(`Remote: tether: forward grp/x refused: port ${other} is not this tenant's lease`),
    );
  });

  test('password and unknown keys are refused; non-SSH bytes do not disturb the gateway', async () => {
    const pw = await run('ssh', [
      ...SSH_OPTS,
      '-o',
      'PreferredAuthentications=password,keyboard-interactive',
      '-p',
      String(gw.sshPort),
      'acme@127.0.0.1',
      'true',
    ]);
    assert.notEqual(pw.code, 0);
    assert.match(pw.stderr, /Permission denied \(publickey\)/);
    const stranger = await run('ssh-keygen', [
      '-t',
      'ed25519',
      '-N',
      '',
      '-q',
      '-f',
      join(gw.dir, 'stranger'),
    ]);
    assert.equal(stranger.code, 0);
    const unknown = await run('ssh', [
      ...SSH_OPTS,
      '-i',
      join(gw.dir, 'stranger'),
      '-p',
      String(gw.sshPort),
      'acme@127.0.0.1',
      'true',
    ]);
    assert.match(unknown.stderr, /Permission denied/);
    const garbage = await new Promise<string>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: gw.sshPort });
      let got = '';
      s.on('data', (c: Buffer) => {
        got += c.toString();
        s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      });
      s.on('error', () => {});
      s.on('close', () => resolve(got));
    });
    assert.match(garbage, /^SSH-2\.0-Tether_/);
    const health = await fetch(`${gw.adminUrl}/health`);
    assert.equal(health.status, 200);
    const key = await gw.addTenant('after-garbage');
    const fwd = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'after-garbage',
      keyFile: key,
      forwards: [{ label: 'grp/e', port: echo.port }],
    });
    assert.ok(fwd.ports.get('grp/e'));
    await fwd.stop();
  });
});

describe('gateway restarts', () => {
  test('a restart gives the same lease port back, and SIGTERM exits 0 within 5 s', async (t) => {
    const gw = await startGateway();
    const echo = await startEchoServer();
    t.after(async () => {
      await gw.stop();
      await echo.close();
    });
    const key = await gw.addTenant('acme');
    const first = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'acme',
      keyFile: key,
      forwards: [
        { label: 'grp/a', port: echo.port },
        { label: 'grp/b', port: echo.port },
      ],
    });
    const ports = [...first.ports.values()];
    assert.equal(ports.length, 2);
    const t0 = Date.now();
    const exit = new Promise<number | null>((r) => gw.process.once('exit', (code) => r(code)));
    const before = gw.output;
    await gw.restart();
    assert.equal(await exit, 0);
    assert.ok(Date.now() - t0 < 5_000 + 20_000);
    // A clean stop (counters written, store closed) while a session is connected, not the forced exit.
    assert.ok(
      before.lines.some((l) => l.includes('"event":"gateway.stopped"')),
      `no clean stop; last lines:\n${before.lines.slice(-5).join('\n')}`,
    );
    await waitFor(() => first.process.exitCode !== null, { what: 'old ssh gone' });
    const second = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'acme',
      keyFile: key,
      forwards: [
        { label: 'grp/b', port: echo.port },
        { label: 'grp/a', port: echo.port },
      ],
    });
    assert.deepEqual([second.ports.get('grp/a'), second.ports.get('grp/b')], ports);
    const s = await openEcho(second.ports.get('grp/b')!);
    s.destroy();
    const t1 = Date.now();
    const exited = new Promise<number | null>((r) => gw.process.once('exit', (code) => r(code)));
    gw.process.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.ok(Date.now() - t1 < 5_000, `stopped in ${Date.now() - t1} ms`);
    await gw.output.wait(/"event":"gateway.stopped"/, 1_000);
    await second.stop();
  });

  test('the range exhausted refuses that forward with the reason; the tenant keeps the others', async (t) => {
    const gw = await startGateway({ ports: 2 });
    const echo = await startEchoServer();
    t.after(async () => {
      await gw.stop();
      await echo.close();
    });
    const a = await gw.addTenant('a');
    const b = await gw.addTenant('b');
    const fa = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'a',
      keyFile: a,
      forwards: [
        { label: 'g/1', port: echo.port },
        { label: 'g/2', port: echo.port },
      ],
    });
    const fb = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'b',
      keyFile: b,
      forwards: [{ label: 'g/1', port: echo.port }],
    });
    t.after(() => Promise.all([fa.stop(), fb.stop()]).then(() => undefined));
    assert.equal(fa.ports.size, 2);
    assert.equal(fb.ports.size, 0);
    await fb.stderr.wait(
      new RegExp(`refused: no free port left in the range ${gw.portRange.low}-${gw.portRange.high}`),
    );
    (await openEcho(fa.ports.get('g/1')!)).destroy();
  });
});
