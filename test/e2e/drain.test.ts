// test-timeout: 240000 (several real gateway starts and drains, one of them waiting for its drain_timeout)
/**
 * SIGTERM drains a single gateway: it stops accepting at once, lets open connections finish
 * (up to drain_timeout, measured from the signal), tells connectors to reconnect, exits 0; a
 * restart loses no acknowledged admin write and the lease ports come back.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse, stringify } from 'yaml';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { sshForward } from '../helpers/openssh.js';
import { startEchoServer, type TestServer } from '../helpers/servers.js';
import { BIN, OutputWatcher, run, tempDir, waitFor } from '../helpers/util.js';

/** A connection through a lease port that stays open until the test ends it; echoes what it sends. */
async function hold(port: number): Promise<{
  socket: net.Socket;
  echo(text: string): Promise<string>;
  closed: Promise<void>;
}> {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  return {
    socket,
    closed,
    echo: (text) =>
      new Promise((resolve, reject) => {
        let got = '';
        const onData = (c: Buffer) => {
          got += c.toString();
          if (got.length >= text.length) {
            socket.off('data', onData);
            resolve(got);
          }
        };
        socket.on('data', onData);
        socket.once('close', () => reject(new Error(`closed after ${JSON.stringify(got)}`)));
        socket.write(text);
      }),
  };
}

/** Whether a new TCP connection to the port is refused (the listener is closed). */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

/** Sends `signal` and resolves with the exit code and the ms from the signal to the exit. */
function signalAndWait(gw: TestGateway, signal: NodeJS.Signals = 'SIGTERM') {
  const p = gw.process;
  const exited = new Promise<{ code: number | null; ms: number }>((resolve) =>
    p.once('exit', (code) => resolve({ code, ms: Date.now() - at })),
  );
  const at = Date.now();
  p.kill(signal);
  return { at, exited };
}

describe('drain: SIGTERM on a single gateway', () => {
  let echo: TestServer;
  const stops: Array<() => Promise<void>> = [];

  before(async () => {
    echo = await startEchoServer();
  });
  after(async () => {
    for (const s of stops.reverse()) await s().catch(() => {});
    await echo?.close();
  });

  test('an open connection finishes, new ones are refused at once, the connector is asked to move; exit 0; after a restart every acknowledged admin write is there and the lease port is back', async (t) => {
    const gw = await startGateway({ config: { drain_timeout: '60s' } });
    stops.push(() => gw.stop());
    const key = await gw.addTenant('acme');
    const conn: TestConnector = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile: key,
      repositories: { grp: { echo: `tcp://127.0.0.1:${echo.port}` } },
    });
    stops.push(() => conn.stop());
    const port = await conn.leasePort('grp/echo');
    const held = await hold(port);
    assert.equal(await held.echo('before'), 'before');

    // Admin writes race the signal: every one the API acknowledged must survive the restart.
    const acked: string[] = [];
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        const id = `w${i}`;
        try {
          const r = await gw.api('POST', '/v1/tenants', { id });
          if (r.status === 201 || r.status === 200) acked.push(id);
        } catch {
          return; // the admin API is gone: the gateway is stopping
        }
      }
    })();
    await waitFor(() => acked.length >= 3, { what: 'a few acknowledged admin writes' });

    const from = gw.output.lines.length;
    const { exited } = signalAndWait(gw);
    const draining = await gw.output.wait(/"event":"gateway.draining"/, 15_000, from);
    assert.match(draining.input, /"connections":1,"sessions":1/);
    // new connections are refused while the open one carries on
    await waitFor(() => refused(port), { what: 'the lease port to refuse new connections' });
    await waitFor(() => refused(gw.sshPort), { what: 'the tunnel port to refuse new connections' });
    assert.equal(await held.echo('during the drain'), 'during the drain');
    await conn.output.wait(/"event":"connector.moving"/, 15_000);
    assert.equal(gw.process.exitCode, null, 'still running while a connection is open');

    const endAt = Date.now();
    held.socket.end();
    const { code } = await exited;
    writing = false;
    await writer;
    t.diagnostic(
      `exit ${Date.now() - endAt} ms after the last connection ended; ${acked.length} admin writes acknowledged`,
    );
    if (code !== 0) t.diagnostic(gw.errors.text());
    assert.equal(code, 0);
    // the gateway's own line (under `workers` each worker logs its part first; the primary adds them up)
    const drained = gw.output.lines
      .slice(from)
      .find((l) => l.includes('"event":"gateway.drained"') && !l.includes('"worker":'));
    assert.ok(drained, 'the drain logged its end');
    assert.match(drained, /"connections":1,"sessions":1,"asked_to_move":1,"moved":0,"cut":0/);
    assert.ok(Date.now() - endAt < 10_000, 'exits soon after the last connection ended');

    await gw.restart();
    for (const id of acked) {
      const r = await gw.api('GET', `/v1/tenants/${id}`);
      assert.equal(r.status, 200, `acknowledged write ${id} lost`);
    }
    assert.equal(await conn.leasePort('grp/echo', 60_000), port, 'the same lease port');
    const again = await hold(port);
    assert.equal(await again.echo('after'), 'after');
    again.socket.destroy();
  });

  test('front doors stop accepting too: the access proxy refuses new connections while an open CONNECT tunnel carries on', async () => {
    const gw = await startGateway({
      config: { drain_timeout: '60s', access_proxy: { listen: '127.0.0.1:0' } },
    });
    stops.push(() => gw.stop());
    const proxy = Number(
      (await gw.output.wait(/"event":"gateway.started".*"access_proxy":"127\.0\.0\.1:(\d+)"/))[1],
    );
    const key = await gw.addTenant('acme');
    const conn = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile: key,
      repositories: { grp: { echo: `tcp://127.0.0.1:${echo.port}` } },
    });
    stops.push(() => conn.stop());
    const groupKey = await gw.groupKey('acme', 'grp');
    const auth = Buffer.from(`acme:${groupKey}`).toString('base64');
    const tunnel = await hold(proxy);
    const answer = await new Promise<string>((resolve) => {
      let got = '';
      const onData = (c: Buffer) => {
        got += c.toString();
        if (!got.includes('\r\n\r\n')) return;
        tunnel.socket.off('data', onData);
        resolve(got);
      };
      tunnel.socket.on('data', onData);
      tunnel.socket.write(
        `CONNECT echo.grp.acme:1 HTTP/1.1\r\nHost: echo.grp.acme:1\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`,
      );
    });
    assert.match(answer, /^HTTP\/1\.1 200 /);
    assert.equal(await tunnel.echo('through the proxy'), 'through the proxy');
    const from = gw.output.lines.length;
    const { exited } = signalAndWait(gw);
    await gw.output.wait(/"event":"gateway.draining","connections":1/, 15_000, from);
    await waitFor(() => refused(proxy), { what: 'the access proxy to refuse new connections' });
    assert.equal(await tunnel.echo('still open'), 'still open');
    tunnel.socket.end();
    assert.equal((await exited).code, 0);
    assert.match(gw.output.lines.slice(from).join('\n'), /"event":"gateway.drained".*"cut":0/);
  });

  test('SIGINT drains the same; plain OpenSSH ignores the reconnect: its connection is cut at drain_timeout and the gateway exits 0 within drain_timeout + 3 s of the signal', async (t) => {
    const gw = await startGateway({ config: { drain_timeout: '2s' } });
    stops.push(() => gw.stop());
    const key = await gw.addTenant('acme');
    const ssh = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'acme',
      keyFile: key,
      forwards: [{ label: 'grp/echo', port: echo.port }],
    });
    stops.push(() => ssh.stop());
    const port = ssh.ports.get('grp/echo')!;
    const held = await hold(port);
    assert.equal(await held.echo('x'), 'x');
    const from = gw.output.lines.length;
    const { exited } = signalAndWait(gw, 'SIGINT');
    const { code, ms } = await exited;
    t.diagnostic(`exit ${ms} ms after SIGINT (drain_timeout 2 s)`);
    assert.equal(code, 0);
    assert.ok(ms >= 2_000, `exited after ${ms} ms, before drain_timeout with a connection open`);
    assert.ok(ms < 5_000, `exited ${ms} ms after the signal`);
    await held.closed;
    const lines = gw.output.lines.slice(from).join('\n');
    assert.match(lines, /"event":"gateway.draining","connections":1,"sessions":1/);
    assert.match(lines, /"asked_to_move":0,"moved":0,"cut":1/);
    assert.match(lines, /drain_timeout \(2000 ms\) reached: cutting 1 connection\(s\) still open/);
  });

  test('a second signal stops at once (open connections cut, exit 0); a third exits at once with 1', async (t) => {
    const gw = await startGateway({ config: { drain_timeout: '60s' } });
    stops.push(() => gw.stop());
    const key = await gw.addTenant('acme');
    const ssh = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'acme',
      keyFile: key,
      forwards: [{ label: 'grp/echo', port: echo.port }],
    });
    stops.push(() => ssh.stop());
    const held = await hold(ssh.ports.get('grp/echo')!);
    assert.equal(await held.echo('x'), 'x');
    const from = gw.output.lines.length;
    signalAndWait(gw, 'SIGTERM');
    await gw.output.wait(/"event":"gateway.draining"/, 15_000, from);
    const { exited } = signalAndWait(gw, 'SIGINT');
    const { code, ms } = await exited;
    t.diagnostic(`exit ${ms} ms after the second signal (drain_timeout 60 s)`);
    assert.equal(code, 0);
    assert.ok(ms < 10_000, `a second signal stops at once, not after ${ms} ms`);
    await held.closed;
    assert.match(gw.output.text(), /received SIGINT again: stopping at once, cutting open connections/);

    // third signal: SIGINT and SIGTERM right after the first are three signals in all
    await gw.restart();
    const from3 = gw.output.lines.length;
    const ssh3 = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'acme',
      keyFile: key,
      forwards: [{ label: 'grp/echo', port: echo.port }],
    });
    stops.push(() => ssh3.stop());
    const held3 = await hold(ssh3.ports.get('grp/echo')!);
    assert.equal(await held3.echo('y'), 'y');
    signalAndWait(gw, 'SIGTERM');
    await gw.output.wait(/"event":"gateway.draining"/, 15_000, from3);
    const third = signalAndWait(gw, 'SIGINT');
    gw.process.kill('SIGTERM');
    const r3 = await third.exited;
    const text = gw.output.lines.slice(from3).join('\n');
    // The stop after the second signal may win the race with the third: then it exits 0.
    if (/a third signal: exiting at once/.test(text)) assert.equal(r3.code, 1);
    else {
      t.diagnostic('the stop finished before the third signal arrived');
      assert.equal(r3.code, 0);
    }
    assert.ok(r3.ms < 10_000);
  });

  test('SIGHUP (systemctl reload) checks gateway.yaml again and changes nothing that runs; a broken file is reported, the gateway keeps serving', async () => {
    const gw = await startGateway();
    stops.push(() => gw.stop());
    const hup = async (re: RegExp) => {
      const from = gw.output.lines.length;
      gw.process.kill('SIGHUP');
      return (await gw.output.wait(re, 15_000, from)).input;
    };
    await hup(/SIGHUP: gateway.yaml is valid and unchanged/);
    const doc = parse(readFileSync(gw.configFile, 'utf8')) as Record<string, unknown>;
    writeFileSync(gw.configFile, stringify({ ...doc, drain_timeout: '5s' }));
    const changed = await hup(/"event":"gateway.reload_checked"/);
    assert.match(changed, /"changed":\["drain_timeout"\]/);
    assert.match(changed, /drain_timeout changed and takes effect at the next restart/);
    writeFileSync(gw.configFile, stringify({ ...doc, drain_timeout: 'later' }));
    const bad = await hup(/"event":"gateway.reload_invalid"/);
    assert.match(bad, /drain_timeout: \\"later\\" is not a duration/);
    assert.match(bad, /the running gateway is unchanged, and a restart would fail until this is fixed/);
    assert.equal(gw.process.exitCode, null, 'still running');
    assert.equal((await gw.api('GET', '/health')).status, 200);
  });

  test('bad drain_timeout values are refused at start with the key and the problem', async () => {
    const dir = tempDir('tether-drain-cfg-');
    const cases: Array<[unknown, RegExp]> = [
      [-5, /drain_timeout: -5 is not a duration \(use e\.g\. "500ms", "60s", "8h"\)/],
      ['-5s', /drain_timeout: "-5s" is not a duration/],
      ['soon', /drain_timeout: "soon" is not a duration/],
      ['2h', /drain_timeout: at most 1 hour/],
    ];
    for (const [value, problem] of cases) {
      const file = join(dir, 'gateway.yaml');
      writeFileSync(file, stringify({ data_dir: join(dir, 'data'), drain_timeout: value }));
      const r = await run(process.execPath, [BIN, 'gateway', '-c', file]);
      assert.equal(r.code, 2, `${JSON.stringify(value)}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, problem);
    }
  });

  test('SIGTERM while the gateway is still starting (its store does not answer) stops it: exit 0', async (t) => {
    // A "PostgreSQL" that accepts connections and never answers: the start waits on it.
    const sockets = new Set<net.Socket>();
    const blackhole = net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => {});
    });
    await new Promise<void>((r) => blackhole.listen({ host: '127.0.0.1', port: 0 }, () => r()));
    const { port } = blackhole.address() as net.AddressInfo;
    const connected = new Promise<void>((r) => blackhole.once('connection', () => r()));
    const dir = tempDir('tether-drain-start-');
    const file = join(dir, 'gateway.yaml');
    writeFileSync(
      file,
      stringify({
        data_dir: join(dir, 'data'),
        store: `postgres://u@127.0.0.1:${port}/db`,
        tunnel: { listen: '127.0.0.1:0' },
        admin: { listen: '127.0.0.1:0' },
      }),
    );
    const p = spawn(process.execPath, [BIN, 'gateway', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out = new OutputWatcher(p.stdout!);
    const exited = new Promise<number | null>((r) => p.once('exit', (c) => r(c)));
    try {
      await out.wait(/"event":"gateway.starting"/, 60_000);
      await connected;
      const at = Date.now();
      p.kill('SIGTERM');
      const code = await exited;
      t.diagnostic(`exit ${Date.now() - at} ms after SIGTERM during the start`);
      assert.equal(code, 0);
      assert.ok(Date.now() - at < 8_000);
      assert.match(out.text(), /received SIGTERM while starting: stopping \(nothing was served yet\)/);
      assert.doesNotMatch(out.text(), /"event":"gateway.started"/);
    } finally {
      p.kill('SIGKILL');
      for (const s of sockets) s.destroy();
      blackhole.close();
    }
  });
});
