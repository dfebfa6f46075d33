// test-timeout: 300000 (five peer daemons and their tunnels; about 45 s alone, up to 4 min on a loaded 2-core machine)
// E2E: the real `tether` binary in peer mode, driven with curl and openssl like a user would.
// Build first: npx tsc -p tsconfig.build.json (npm test does it).
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';

// TETHER_BIN points at another build of the binary (default: this tree's dist/).
const BIN = resolve(process.env.TETHER_BIN ?? 'dist/bin/tether.js');

// ---------- helpers ----------

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<Run> {
  return new Promise((resolvePromise) => {
    execFile(cmd, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolvePromise({ code, stdout, stderr });
    });
  });
}

const tether = (...args: string[]) => run(process.execPath, [BIN, ...args]);

interface CurlResult {
  code: number;
  status: number;
  body: string;
  stderr: string;
}

/** Real curl; `status` is 0 when no HTTP answer came. */
async function curl(...args: string[]): Promise<CurlResult> {
  const r = await run('curl', ['-sS', '--max-time', '10', '-w', '\n%{http_code}', ...args]);
  const cut = r.stdout.lastIndexOf('\n');
  return {
    code: r.code,
    status: Number(r.stdout.slice(cut + 1)) || 0,
    body: r.stdout.slice(0, cut),
    stderr: r.stderr,
  };
}

type LogLine = Record<string, unknown> & { msg?: string; level?: number };

interface PeerProc {
  api: string;
  tunnel: string;
  tunnelPort: number;
  logs: LogLine[];
  proc: ChildProcess;
  waitLog(what: string, pred: (l: LogLine) => boolean): Promise<LogLine>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

const started = new Set<PeerProc>();

async function until<T>(
  what: string,
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  ms = 20_000,
) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts `tether peer run` on OS-chosen loopback ports (unless given) and waits for "peer ready". */
async function startPeer(extra: string[] = [], tunnelBind = '127.0.0.1:0'): Promise<PeerProc> {
  const proc = spawn(
    process.execPath,
    [
      BIN,
      'peer',
      'run',
      '--tunnel-bind',
      tunnelBind,
      '--http-bind',
      '127.0.0.1:0',
      '--log-level',
      'debug',
      ...extra,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const logs: LogLine[] = [];
  let stderr = '';
  proc.stderr!.on('data', (d) => {
    stderr += d;
  });
  const waiters = new Set<() => void>();
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    try {
      logs.push(JSON.parse(line) as LogLine);
    } catch {
      logs.push({ msg: line });
    }
    for (const w of waiters) w();
  });
  const exited = once(proc, 'exit');
  const waitLog = (what: string, pred: (l: LogLine) => boolean) =>
    new Promise<LogLine>((res, rej) => {
      const check = () => {
        const hit = logs.find(pred);
        if (hit) {
          waiters.delete(check);
          clearTimeout(timer);
          res(hit);
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        rej(
          new Error(
            `timed out waiting for log "${what}"; stderr: ${stderr}; logs: ${JSON.stringify(logs.slice(-5))}`,
          ),
        );
      }, 60_000); // generous: a peer starts slowly on a loaded machine; a failure still ends the wait at once
      waiters.add(check);
      void exited.then(() => {
        if (waiters.has(check)) {
          waiters.delete(check);
          clearTimeout(timer);
          rej(new Error(`peer exited while waiting for "${what}": ${stderr}`));
        }
      });
      check();
    });
  const ready = await waitLog('peer ready', (l) => l.msg === 'peer ready');
  const tunnel = String(ready.tunnel);
  const p: PeerProc = {
    api: String(ready.api),
    tunnel,
    tunnelPort: Number(tunnel.slice(tunnel.lastIndexOf(':') + 1)),
    logs,
    proc,
    waitLog,
    async stop(signal = 'SIGTERM') {
      started.delete(p);
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
    },
  };
  started.add(p);
  return p;
}

/** The last log lines of a peer, for failure messages. */
function tail(p: PeerProc, n = 6): string {
  return p.logs
    .slice(-n)
    .map((l) => `${l.msg} ${l.reason ?? ''}`)
    .join(' | ');
}

async function freePort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

/** A real HTTP service answering "hello from <name>". */
async function helloServer(name: string): Promise<{ server: Server; port: number }> {
  const server = createHttpServer((_req, res) => res.end(`hello from ${name}`));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port };
}

/** A real TCP echo service: what a long-lived connection through a peer looks like. */
async function echoServer(): Promise<{ close(): void; port: number }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.pipe(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    close() {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

/** A connection to a port; echo(text) sends a line and waits for it to come back. */
async function openEcho(port: number) {
  const s = connect({ host: '127.0.0.1', port });
  await once(s, 'connect');
  let got = '';
  s.on('data', (d) => {
    got += d;
  });
  s.on('error', () => {});
  const closed = once(s, 'close');
  return {
    socket: s,
    closed,
    async echo(text: string): Promise<string> {
      got = '';
      s.write(`${text}\n`);
      await until(`"${text}" echoed`, () => got.endsWith('\n') || s.destroyed);
      return got.trim();
    },
  };
}

/** Resolves with the error code of a connection attempt (ECONNREFUSED), or "connected". */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

interface ListItem {
  id: string;
  name: string;
  type: string;
  status: string;
  reason?: string;
  source_port: number;
}

/** Polls /list until some exposure has `status`; returns those. */
function withStatus(status: string, p: PeerProc, ...curlArgs: string[]) {
  return until(status, async () => {
    const hits = (await list(p, ...curlArgs)).filter((i) => i.status === status);
    return hits.length > 0 && hits;
  });
}

async function list(p: PeerProc, ...curlArgs: string[]): Promise<ListItem[]> {
  const r = await curl(...curlArgs, `${p.api}/list`);
  assert.equal(r.status, 200, r.body);
  return JSON.parse(r.body) as ListItem[];
}

function expose(p: PeerProc, body: Record<string, unknown>, ...curlArgs: string[]) {
  return curl(...curlArgs, '-d', JSON.stringify(body), `${p.api}/expose`);
}

/**
 * POST /expose waits up to 5 s for the first outcome; on a heavily loaded host the session may
 * take longer, so tests that go on to send traffic wait for COMPLETE the way a user would.
 */
function allComplete(p: PeerProc, ...curlArgs: string[]) {
  return until('every exposure COMPLETE', async () => {
    const items = await list(p, ...curlArgs);
    return items.length > 0 && items.every((i) => i.status === 'COMPLETE');
  });
}

// ---------- tests ----------

let work: string;
let hello: { server: Server; port: number };

before(async () => {
  assert.ok(existsSync(BIN), `${BIN} is missing: build first with npx tsc -p tsconfig.build.json`);
  work = await mkdtemp(join(tmpdir(), 'tether-peer-e2e-'));
  hello = await helloServer('the service');
});

after(async () => {
  await Promise.all([...started].map((p) => p.stop('SIGKILL')));
  hello.server.close();
  await rm(work, { recursive: true, force: true });
});

// Certificates for the mTLS tests, made once with the real CLI by whichever test needs them first.
let certs = '';
let certsMade: Promise<void> | undefined;
function certsReady(): Promise<void> {
  certsMade ??= (async () => {
    certs = join(work, 'certs');
    const gen = async (...args: string[]) => {
      const r = await tether('certs', 'generate', ...args);
      assert.equal(r.code, 0, r.stderr);
    };
    await Promise.all([gen('--ca', certs), gen('--ca', join(certs, 'other'))]);
    const root = ['--root-ca', join(certs, 'root.cert'), '--root-key', join(certs, 'root.key')];
    const other = [
      '--root-ca',
      join(certs, 'other', 'root.cert'),
      '--root-key',
      join(certs, 'other', 'root.key'),
    ];
    const names = ['--ip-address', '127.0.0.1', '--dns-name', 'localhost'];
    await Promise.all([
      gen('--leaf', ...names, '--dns-name', 'server1', ...root, join(certs, 'server1')),
      // "a,b" is two names, as with the connector's flags; "host:port" names are kept as given.
      gen('--leaf', ...names, '--dns-name', 'server2,server2:9092', ...root, join(certs, 'server2')),
      gen('--leaf', ...names, ...other, join(certs, 'other', 'server3')),
    ]);
  })();
  return certsMade;
}

/** The three certificate flags for a peer whose leaf is in certs/<dir>. */
const leaf = (dir: string) => [
  '--root-cert-path',
  join(certs, dir.startsWith('other/') ? 'other' : '.', 'root.cert'),
  '--server-cert-path',
  join(certs, dir, 'leaf.cert'),
  '--server-key-path',
  join(certs, dir, 'leaf.key'),
];

describe('tether peer mode', { concurrency: true }, () => {
  test('type "local": the remote peer listens, connections come back and reach a service here', async (t) => {
    const [a, b] = await Promise.all([startPeer(), startPeer()]);
    t.after(() => Promise.all([a.stop(), b.stop()]));
    const port = await freePort();
    const r = await expose(a, {
      name: 'devservice',
      source_port: port,
      source_addr: '127.0.0.1',
      remote_connector_addr: b.tunnel,
      destination_addr: `127.0.0.1:${hello.port}`,
      type: 'local',
    });
    assert.equal(r.status, 200, r.body);
    const id = r.body;
    assert.match(id, /^[0-9a-f-]{36}$/);
    await allComplete(a);
    // The listener is on peer B's side: B logs it.
    await b.waitLog('B listens', (l) => l.msg === 'listening for the peer' && l.bind === `127.0.0.1:${port}`);
    const got = await curl(`http://127.0.0.1:${port}/`);
    assert.equal(got.status, 200);
    assert.equal(got.body, 'hello from the service');
    const items = await list(a);
    assert.deepEqual(
      items.map((i) => [i.id, i.name, i.type, i.status, i.source_port]),
      [[id, 'devservice', 'LOCAL', 'COMPLETE', port]],
    );
    const del = await curl('-X', 'DELETE', `${a.api}/expose/${id}`);
    assert.equal(del.status, 200);
    assert.deepEqual(await list(a), []);
    await until(
      'the remote listener to close',
      async () => (await curl(`http://127.0.0.1:${port}/`)).code === 7,
    );
  });

  test('type "remote": this peer listens, connections reach a service beside the remote peer', async (t) => {
    const [a, b] = await Promise.all([startPeer(), startPeer()]);
    t.after(() => Promise.all([a.stop(), b.stop()]));
    const port = await freePort();
    const r = await expose(a, {
      name: 'remoteservice',
      source_port: port,
      source_addr: '127.0.0.1',
      remote_connector_addr: b.tunnel,
      destination_addr: `localhost:${hello.port}`,
      type: 'remote',
    });
    assert.equal(r.status, 200, r.body);
    await allComplete(a);
    const got = await curl(`http://127.0.0.1:${port}/`);
    assert.equal(got.body, 'hello from the service');
    // B dialled the destination: it logs that.
    await b.waitLog('B dials', (l) => l.msg === 'dialled the destination for the peer');
    assert.deepEqual(
      (await list(a)).map((i) => [i.type, i.status]),
      [['REMOTE', 'COMPLETE']],
    );
    // A JSON client gets {"id"}.
    const port2 = await freePort();
    const j = await expose(
      a,
      {
        name: 'json',
        source_port: port2,
        source_addr: '127.0.0.1',
        remote_connector_addr: b.tunnel,
        destination_addr: `127.0.0.1:${hello.port}`,
        type: 'remote',
      },
      '-H',
      'accept: application/json',
    );
    assert.match((JSON.parse(j.body) as { id: string }).id, /^[0-9a-f-]{36}$/);
    assert.equal((await curl(`${a.api}/health`)).body, 'OK');
  });

  test('bad input: 400 naming the field, 404 for an unknown id', async (t) => {
    const [a, b] = await Promise.all([startPeer(), startPeer()]);
    t.after(() => Promise.all([a.stop(), b.stop()]));
    const ok = {
      name: 'x',
      source_port: await freePort(),
      source_addr: '127.0.0.1',
      remote_connector_addr: b.tunnel,
      destination_addr: `127.0.0.1:${hello.port}`,
      type: 'remote',
    };
    const bad = async (body: unknown, field: string, message: RegExp) => {
      const r = await curl('-d', typeof body === 'string' ? body : JSON.stringify(body), `${a.api}/expose`);
      assert.equal(r.status, 400, r.body);
      const e = (
        JSON.parse(r.body) as { error: { code: string; message: string; details?: { path: string }[] } }
      ).error;
      assert.equal(e.code, 'BAD_REQUEST');
      assert.match(e.message, message);
      if (field)
        assert.ok(
          e.details?.some((d) => d.path === field),
          `${field} named in ${r.body}`,
        );
    };
    const { name: _n, ...noName } = ok;
    await bad(noName, 'name', /name: is required/);
    await bad(
      { ...ok, source_port: '8080' },
      'source_port',
      /source_port: must be a whole number from 1 to 65535, got the string "8080"/,
    );
    await bad({ ...ok, name: 42 }, 'name', /name: must be a string, got number 42/);
    await bad({ ...ok, type: 'both' }, 'type', /type: must be "local" or "remote", got the string "both"/);
    await bad({ ...ok, source_port: 70000 }, 'source_port', /source_port: must be from 1 to 65535/);
    await bad({ ...ok, source_port: 0 }, 'source_port', /source_port: must be from 1 to 65535/);
    await bad(
      { ...ok, destination_addr: 'no-port-here' },
      'destination_addr',
      /destination_addr: "no-port-here" has no port/,
    );
    await bad(
      { ...ok, remote_connector_addr: 'host:http' },
      'remote_connector_addr',
      /port "http" is not a number/,
    );
    await bad(
      { ...ok, source_addr: 'not valid' },
      'source_addr',
      /source_addr: is not an IP address or host name/,
    );
    await bad('{"name":', '', /request body is not valid JSON/);

    // Port already in use here (type "remote" listens here).
    const busy = createServer().listen(0, '127.0.0.1');
    await once(busy, 'listening');
    t.after(() => busy.close());
    const busyPort = (busy.address() as AddressInfo).port;
    await bad(
      { ...ok, source_port: busyPort },
      'source_port',
      new RegExp(`source_port: port ${busyPort} is already in use on this machine`),
    );
    // Port already in use on the remote peer (type "local" listens there). A working exposure
    // first, so the session to B is up and the answer does not race B's handshake on a busy host.
    const working = await expose(a, ok);
    assert.equal(working.status, 200, working.body);
    await allComplete(a);
    await bad(
      { ...ok, source_port: busyPort, type: 'local' },
      'source_port',
      new RegExp(`source_port: port ${busyPort} cannot be opened on the remote peer at ${b.tunnel}`),
    );
    await b.waitLog(
      'B says why',
      (l) => l.msg === 'refused to listen for the peer' && l.code === 'EADDRINUSE',
    );
    assert.deepEqual(
      (await list(a)).map((i) => i.id),
      [working.body],
      'refused requests leave nothing behind',
    );

    const nf = await curl('-X', 'DELETE', `${a.api}/expose/0b5e7d1c-0000-4000-8000-000000000000`);
    assert.equal(nf.status, 404);
    assert.deepEqual(JSON.parse(nf.body), {
      error: { code: 'NOT_FOUND', message: 'exposure "0b5e7d1c-0000-4000-8000-000000000000" not found' },
    });
    assert.equal((await curl('-X', 'PUT', `${a.api}/list`)).status, 405);
    assert.equal((await curl(`${a.api}/nope`)).status, 404);
  });

  test('remote peer unreachable: ERROR with the reason, retried with backoff until it comes up', async (t) => {
    const a = await startPeer();
    t.after(() => a.stop());
    const tunnelPort = await freePort();
    const port = await freePort();
    const r = await expose(a, {
      name: 'later',
      source_port: port,
      source_addr: '127.0.0.1',
      remote_connector_addr: `127.0.0.1:${tunnelPort}`,
      destination_addr: `127.0.0.1:${hello.port}`,
      type: 'local',
    });
    assert.equal(r.status, 200, r.body);
    const [item] = await withStatus('ERROR', a);
    assert.equal(item?.status, 'ERROR');
    assert.match(
      item?.reason ?? '',
      new RegExp(`cannot reach the remote peer at 127.0.0.1:${tunnelPort}: connection refused`),
    );
    await a.waitLog(
      'a second attempt',
      (l) => l.msg === 'cannot connect to the remote peer; will retry' && l.attempts === 2,
    );

    const b = await startPeer([], `127.0.0.1:${tunnelPort}`);
    t.after(() => b.stop());
    // Backoff grows to 30 s between attempts: allow for one full wait on a slow host.
    await until('COMPLETE', async () => (await list(a))[0]?.status === 'COMPLETE', 45_000).catch((e: Error) =>
      assert.fail(`${e.message}; a's log: ${tail(a)}`),
    );
    assert.equal((await curl(`http://127.0.0.1:${port}/`)).body, 'hello from the service');
  });

  test('restart of the remote peer: exposures are re-established and /list shows the state meanwhile', async (t) => {
    const a = await startPeer();
    let b = await startPeer();
    t.after(() => Promise.all([a.stop(), b.stop()]));
    const [lp, rp] = [await freePort(), await freePort()];
    const common = {
      source_addr: '127.0.0.1',
      remote_connector_addr: b.tunnel,
      destination_addr: `127.0.0.1:${hello.port}`,
    };
    assert.equal((await expose(a, { ...common, name: 'l', source_port: lp, type: 'local' })).status, 200);
    assert.equal((await expose(a, { ...common, name: 'r', source_port: rp, type: 'remote' })).status, 200);
    await allComplete(a);
    assert.equal((await curl(`http://127.0.0.1:${lp}/`)).body, 'hello from the service');

    await b.stop('SIGKILL');
    const down = await until('both to leave COMPLETE', async () => {
      const items = await list(a);
      return items.every((i) => i.status === 'PENDING' || i.status === 'ERROR') && items;
    });
    for (const i of down) assert.match(i.reason ?? '', /remote peer/);
    assert.notEqual((await curl(`http://127.0.0.1:${rp}/`)).body, 'hello from the service');

    b = await startPeer([], `127.0.0.1:${b.tunnelPort}`);
    // Backoff grows to 30 s between attempts: allow for one full wait on a slow host.
    await until(
      'both COMPLETE again',
      async () => (await list(a)).every((i) => i.status === 'COMPLETE'),
      45_000,
    ).catch((e: Error) => assert.fail(`${e.message}; a's log: ${tail(a)}`));
    assert.equal((await curl(`http://127.0.0.1:${lp}/`)).body, 'hello from the service');
    assert.equal((await curl(`http://127.0.0.1:${rp}/`)).body, 'hello from the service');
  });

  test('SIGTERM drains: nothing new is taken, open connections in both directions finish, then the peer exits 0', async (t) => {
    const echo = await echoServer();
    const [a, b] = await Promise.all([startPeer(['--drain-timeout', '60s']), startPeer()]);
    t.after(async () => {
      await Promise.all([a.stop('SIGKILL'), b.stop()]);
      echo.close();
    });
    const [lp, rp] = [await freePort(), await freePort()];
    const common = {
      source_addr: '127.0.0.1',
      remote_connector_addr: b.tunnel,
      destination_addr: `127.0.0.1:${echo.port}`,
    };
    assert.equal((await expose(a, { ...common, name: 'l', source_port: lp, type: 'local' })).status, 200);
    assert.equal((await expose(a, { ...common, name: 'r', source_port: rp, type: 'remote' })).status, 200);
    await allComplete(a);
    // "local": B listens and carries back to A, which dials; "remote": A listens, B dials
    const [viaB, viaA] = [await openEcho(lp), await openEcho(rp)];
    assert.equal(await viaB.echo('one'), 'one');
    assert.equal(await viaA.echo('one'), 'one');

    const exited = once(a.proc, 'exit');
    a.proc.kill('SIGTERM');
    const draining = await a.waitLog('draining', (l) => l.event === 'peer.draining');
    assert.equal(draining.connections, 2);
    assert.equal(draining.drain_timeout_ms, 60_000);
    // nothing new: A's listener and its API are closed, B stops listening for A
    await b.waitLog(
      'B stops listening',
      (l) => l.msg === 'stopped listening' && l.bind === `127.0.0.1:${lp}`,
    );
    assert.equal(await tryConnect(rp), 'ECONNREFUSED');
    assert.equal(await tryConnect(lp), 'ECONNREFUSED');
    assert.equal((await curl(`${a.api}/list`)).code, 7, 'the API still answers while draining');
    // the open connections still carry data both ways
    assert.equal(await viaB.echo('two'), 'two');
    assert.equal(await viaA.echo('two'), 'two');
    assert.equal(a.proc.exitCode, null, 'the peer exited with connections open');

    viaB.socket.end();
    viaA.socket.end();
    const [code] = await exited;
    assert.equal(code, 0);
    const drained = a.logs.find((l) => l.event === 'peer.drained');
    assert.equal(drained?.cut, 0, JSON.stringify(drained));
    assert.match(String(drained?.msg), /^drained in \d+ ms: every open connection finished$/);
    // B, the other side, goes on: its API answers and A's exposures are gone from it
    assert.equal((await curl(`${b.api}/health`)).body, 'OK');
  });

  test('a drain cuts what is still open at --drain-timeout, and a second signal cuts at once', async (t) => {
    const echo = await echoServer();
    const [a, b, c] = await Promise.all([
      startPeer(['--drain-timeout', '1s']),
      startPeer(),
      startPeer(['--drain-timeout', '1h']),
    ]);
    t.after(async () => {
      await Promise.all([a.stop('SIGKILL'), b.stop(), c.stop('SIGKILL')]);
      echo.close();
    });
    const [pa, pc] = [await freePort(), await freePort()];
    const common = {
      source_addr: '127.0.0.1',
      remote_connector_addr: b.tunnel,
      destination_addr: `127.0.0.1:${echo.port}`,
      type: 'remote',
    };
    assert.equal((await expose(a, { ...common, name: 'a', source_port: pa })).status, 200);
    assert.equal((await expose(c, { ...common, name: 'c', source_port: pc })).status, 200);
    await Promise.all([allComplete(a), allComplete(c)]);
    const [viaA, viaC] = [await openEcho(pa), await openEcho(pc)];
    assert.equal(await viaA.echo('x'), 'x');
    assert.equal(await viaC.echo('x'), 'x');

    // A: the connection is left open; the drain times out after 1 s and cuts it
    const aExited = once(a.proc, 'exit');
    a.proc.kill('SIGTERM');
    const [aCode] = await aExited;
    assert.equal(aCode, 0);
    await viaA.closed;
    const drained = a.logs.find((l) => l.event === 'peer.drained');
    assert.equal(drained?.cut, 1, JSON.stringify(drained));
    assert.ok(Number(drained?.duration_ms) >= 1000, JSON.stringify(drained));
    assert.match(
      String(drained?.msg),
      /drain_timeout \(1000 ms\) reached: cutting 1 connection\(s\) still open/,
    );

    // C drains for up to an hour: a second SIGTERM stops it at once, cutting the connection
    const cExited = once(c.proc, 'exit');
    c.proc.kill('SIGTERM');
    await c.waitLog('draining', (l) => l.event === 'peer.draining');
    assert.equal(await viaC.echo('still'), 'still');
    c.proc.kill('SIGTERM');
    await c.waitLog('stop at once', (l) => /^received SIGTERM again: stopping at once$/.test(String(l.msg)));
    const [cCode] = await cExited;
    assert.equal(cCode, 0);
    await viaC.closed;
    assert.equal((await curl(`${b.api}/health`)).body, 'OK');
  });

  test('startup errors are clear', async () => {
    const missing = join(work, 'missing.cert');
    const busy = createServer().listen(0, '127.0.0.1');
    await once(busy, 'listening');
    const busyBind = `127.0.0.1:${(busy.address() as AddressInfo).port}`;
    const [incomplete, unreadable, unknown, level, inUse, drain] = await Promise.all([
      tether('peer', 'run', '--root-cert-path', 'root.cert', '--http-bind', '127.0.0.1:0'),
      tether(
        'peer',
        'run',
        ...['--root-cert-path', '--server-cert-path', '--server-key-path'].flatMap((f) => [f, missing]),
      ),
      tether('peer', 'run', '--bogus'),
      tether('peer', 'run', '--log-level', 'chatty'),
      tether('peer', 'run', '--tunnel-bind', busyBind, '--http-bind', '127.0.0.1:0'),
      tether('peer', 'run', '--drain-timeout', 'soon', '--http-bind', '127.0.0.1:0'),
    ]);
    busy.close();
    assert.equal(incomplete.code, 2);
    assert.equal(
      incomplete.stderr,
      'tether: --root-cert-path, --server-cert-path and --server-key-path go together (all three for mTLS, or none): missing --server-cert-path, --server-key-path\n',
    );
    assert.equal(unreadable.code, 2);
    assert.equal(unreadable.stderr, `tether: cannot read --root-cert-path ${missing}: no such file\n`);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown option '--bogus'/);
    assert.equal(level.code, 2);
    assert.match(level.stderr, /--log-level "chatty" is not one of trace, debug, info, warn, error/);
    assert.equal(drain.code, 2);
    assert.equal(
      drain.stderr,
      'tether: --drain-timeout "soon" is not a duration (use e.g. "500ms", "60s", "8h")\n',
    );
    assert.equal(inUse.code, 2);
    assert.equal(
      inUse.stderr,
      `tether: cannot listen on --tunnel-bind ${busyBind}: the address is already in use\n`,
    );
  });

  test('certs generate: openssl verify accepts the leaves, SANs are there, keys are 0600', async () => {
    await certsReady();
    const v = await run('openssl', [
      'verify',
      '-CAfile',
      join(certs, 'root.cert'),
      join(certs, 'server1', 'leaf.cert'),
      join(certs, 'server2', 'leaf.cert'),
    ]);
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /server1\/leaf.cert: OK\n.*server2\/leaf.cert: OK/);
    const foreign = await run('openssl', [
      'verify',
      '-CAfile',
      join(certs, 'root.cert'),
      join(certs, 'other', 'server3', 'leaf.cert'),
    ]);
    assert.notEqual(foreign.code, 0);
    const san = await run('openssl', [
      'x509',
      '-in',
      join(certs, 'server2', 'leaf.cert'),
      '-noout',
      '-ext',
      'subjectAltName',
    ]);
    assert.match(san.stdout, /DNS:localhost, DNS:server2, DNS:server2:9092, IP Address:127\.0\.0\.1/);
    for (const f of ['root.key', 'server1/leaf.key', 'server2/leaf.key']) {
      assert.equal((await stat(join(certs, f))).mode & 0o777, 0o600, f);
    }
    const root = ['--root-ca', join(certs, 'root.cert'), '--root-key', join(certs, 'root.key')];
    const [again, neither, noRoot, badIp] = await Promise.all([
      tether('certs', 'generate', '--ca', certs),
      tether('certs', 'generate', join(work, 'x')),
      tether('certs', 'generate', '--leaf', '--dns-name', 'a', join(work, 'x')),
      tether('certs', 'generate', '--leaf', '--ip-address', 'localhost', ...root, join(work, 'x')),
    ]);
    assert.equal(again.code, 4);
    assert.match(again.stderr, /root.cert already exists \(use --force to replace it\)/);
    assert.equal(neither.code, 2);
    assert.match(neither.stderr, /give exactly one of --ca or --leaf/);
    assert.equal(noRoot.code, 2);
    assert.match(noRoot.stderr, /--leaf needs --root-ca and --root-key/);
    assert.equal(badIp.code, 2);
    assert.match(badIp.stderr, /--ip-address "localhost" is not an IP address/);
  });

  test("walkthrough over mTLS: peer 1 exposes peer 2's HTTPS API on a port of peer 2", async (t) => {
    await certsReady();
    const [p1, p2] = await Promise.all([startPeer(leaf('server1')), startPeer(leaf('server2'))]);
    t.after(() => Promise.all([p1.stop(), p2.stop()]));
    assert.match(p1.api, /^https:/);
    const port = await freePort();
    const p2api = new URL(p2.api).port;
    const r = await curl(
      '-k',
      '-d',
      JSON.stringify({
        name: 'devservice',
        source_port: port,
        source_addr: '127.0.0.1',
        remote_connector_addr: `localhost:${p2.tunnelPort}`,
        destination_addr: `localhost:${p2api}`,
        type: 'local',
      }),
      `${p1.api}/expose`,
    );
    assert.equal(r.status, 200, r.body);
    await allComplete(p1, '-k');
    const health = await curl('-k', `https://localhost:${port}/health`);
    assert.equal(health.status, 200, health.stderr);
    assert.equal(health.body, 'OK');
    // The HTTPS API presents the server certificate, which chains to the root.
    const strict = await curl('--cacert', join(certs, 'root.cert'), `https://127.0.0.1:${port}/health`);
    assert.equal(strict.body, 'OK', strict.stderr);
    assert.deepEqual(
      (await list(p1, '-k')).map((i) => i.status),
      ['COMPLETE'],
    );
    await p2.waitLog(
      'p2 sees p1 with its certificate',
      (l) => l.msg === 'peer connected' && /CN=localhost/.test(String(l.cert)),
    );
  });

  test('mTLS negatives: no client certificate, a certificate from another root, a plain peer', async (t) => {
    await certsReady();
    const [p2, p3, plain] = await Promise.all([
      startPeer(leaf('server2')),
      startPeer(leaf('other/server3')),
      startPeer(),
    ]);
    t.after(() => Promise.all([p2.stop(), p3.stop(), plain.stop()]));
    const refused = (reason: RegExp) => (l: LogLine) =>
      l.msg === 'refused a tunnel connection: TLS handshake failed' && reason.test(String(l.reason));

    // 1. No client certificate (curl trusts the root, presents nothing).
    const noCert = await curl('--cacert', join(certs, 'root.cert'), `https://127.0.0.1:${p2.tunnelPort}/`);
    assert.notEqual(noCert.code, 0);
    assert.match(noCert.stderr, /certificate required/);
    await p2.waitLog('refusal of no certificate', refused(/presented no client certificate/));

    // 2a. A certificate from another root, presented by curl (which trusts p2): p2 refuses it.
    const foreign = await curl(
      '--cacert',
      join(certs, 'root.cert'),
      '--cert',
      join(certs, 'other', 'server3', 'leaf.cert'),
      '--key',
      join(certs, 'other', 'server3', 'leaf.key'),
      `https://127.0.0.1:${p2.tunnelPort}/`,
    );
    assert.notEqual(foreign.code, 0, 'curl got no answer');
    await p2.waitLog(
      'refusal of a foreign certificate',
      refused(/client certificate is not signed by the configured root/),
    );

    // 2b. A peer with a certificate from another root: its exposure goes to ERROR with the reason.
    const port = await freePort();
    const r = await expose(
      p3,
      {
        name: 'foreign',
        source_port: port,
        source_addr: '127.0.0.1',
        remote_connector_addr: `127.0.0.1:${p2.tunnelPort}`,
        destination_addr: `127.0.0.1:${hello.port}`,
        type: 'remote',
      },
      '-k',
    );
    assert.equal(r.status, 200, r.body);
    const [item] = await withStatus('ERROR', p3, '-k');
    assert.equal(item?.status, 'ERROR');
    assert.match(item?.reason ?? '', /certificate is not signed by our root/);
    await p2.waitLog('refusal of the foreign peer', refused(/during the TLS handshake/));

    // 3. A peer without certificates cannot talk to an mTLS peer either.
    const r2 = await expose(plain, {
      name: 'plain',
      source_port: await freePort(),
      source_addr: '127.0.0.1',
      remote_connector_addr: `127.0.0.1:${p2.tunnelPort}`,
      destination_addr: `127.0.0.1:${hello.port}`,
      type: 'remote',
    });
    assert.equal(r2.status, 200, r2.body);
    const [pi] = await withStatus('ERROR', plain);
    assert.equal(pi?.status, 'ERROR');
    assert.match(pi?.reason ?? '', /does it require mTLS\?/);
    await p2.waitLog('refusal of the plain peer', refused(/does not speak TLS/));
  });
});
