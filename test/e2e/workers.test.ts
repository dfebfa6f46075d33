// test-timeout: 300000 (six gateways with two workers each, one after another; about 60 s alone, over 2 min under load)
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Client } from 'ssh2';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { echoLogin, forwardIn, forwardsOf } from '../helpers/echo-logins.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import {
  request,
  startEchoServer,
  startHttpServer,
  type TestServer,
  tcpExchange,
} from '../helpers/servers.js';
import { PasswordClient, proxyPort as sshProxyPort, startSshd, type TestSshd } from '../helpers/sshd.js';
import { makeCa, makeServerCert } from '../helpers/tls-certs.js';
import { startedLine } from '../helpers/transports.js';
import { nextEvent, run, tempDir, waitFor } from '../helpers/util.js';

/** Forwarded connections the logins below have accepted. */
let accepted = 0;

/** An SSH login as a tenant whose forwarded connections echo what they receive (counted). */
const login = (port: number, username: string, keyFile: string) =>
  echoLogin(port, username, keyFile, {
    onAccept: () => {
      accepted++;
    },
  });

/** Sends `text` on a new connection and resolves with what comes back (the services echo). */
const echo = async (port: number, text: string) => (await tcpExchange(port, text, text.length)).toString();

/** The primary's /metrics: the whole gateway's figures. */
async function metricsOf(gw: TestGateway): Promise<string> {
  const res = await fetch(`${gw.adminUrl}/metrics`, {
    headers: { authorization: `Bearer ${gw.adminToken}` },
  });
  return res.text();
}

/**
 * Four logins as `tenant` (kept in `clients`), each asking for a forward `g/r<i>`: every one
 * granted, and all four online in the primary's view.
 */
async function fourForwards(gw: TestGateway, tenant: string, keyFile: string, clients: Client[]) {
  for (let i = 0; i < 4; i++) clients.push(await login(gw.sshPort, tenant, keyFile));
  const granted = await Promise.all(clients.map((c, i) => forwardIn(c, `g/r${i}`)));
  for (const g of granted) assert.equal(g.err, undefined, g.err?.message);
  return waitFor(
    async () => {
      const f = await forwardsOf(gw, tenant);
      return f.filter((x) => x.state === 'online').length === 4 ? f : null;
    },
    { timeout: 10_000, what: 'four forwards online' },
  );
}

/**
 * Which of `pids` hold the listening socket of TCP `port`: the socket's inode from
 * /proc/net/tcp{,6}, then each process's open fds. Whoever holds it accepts its connections.
 */
function listenersOf(port: number, pids: number[]): number[] {
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6'])
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const c = line.trim().split(/\s+/);
      if (c.length > 9 && c[3] === '0A' && Number.parseInt(c[1]!.split(':')[1]!, 16) === port)
        inodes.add(c[9]!);
    }
  assert.ok(inodes.size > 0, `a listening socket on port ${port}`);
  const holds = (pid: number) =>
    readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return inodes.has(/^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1] ?? '');
      } catch {
        return false; // closed meanwhile
      }
    });
  return pids.filter(holds);
}

describe('gateway with workers: 2', () => {
  let gw: TestGateway;
  let acmeKey: string;
  let otherKey: string;
  const QUOTA = 3;
  const clients: Client[] = [];

  before(async () => {
    // the primary passes connections on (the default, named so TETHER_TEST_WORKER_ACCEPT cannot change it)
    gw = await startGateway({
      config: { workers: 2, worker_accept: 'primary', access_proxy: { listen: '127.0.0.1:0' } },
      ports: 40,
    });
    acmeKey = await gw.addTenant('acme', ['--ports', String(QUOTA)]);
    otherKey = await gw.addTenant('other');
  });

  after(async () => {
    for (const c of clients) c.end();
    await gw?.stop();
  });

  test('the primary starts two workers and says where they listen', async () => {
    const pids = gw.workerPids();
    assert.equal(pids.length, 2, 'two worker pids in gateway.json');
    assert.ok(!pids.includes(gw.process.pid!), 'workers are processes of their own');
    for (const pid of pids) process.kill(pid, 0); // alive
    await gw.output.wait(/"event":"gateway.worker_started","worker":1/);
    await gw.output.wait(/"event":"gateway.worker_started","worker":2/);
  });

  test('sessions land on both workers; every forward is reached through its lease port and through the access proxy, whichever worker serves it', async () => {
    // Logins are spread over the workers by the primary: four logins land on both.
    const forwards = await fourForwards(gw, 'other', otherKey, clients);
    const nodes = new Set(forwards.map((f) => f.node));
    assert.deepEqual([...nodes].sort(), ['worker-1', 'worker-2'], 'forwards on both workers');
    // worker_accept: primary (the default): the primary accepts and passes each socket on
    for (const f of forwards)
      assert.deepEqual(listenersOf(f.port, [gw.process.pid!, ...gw.workerPids()]), [gw.process.pid!]);
    for (const f of forwards) {
      for (let k = 0; k < 3; k++)
        assert.equal(await echo(f.port, `raw ${f.label} ${k}\n`), `raw ${f.label} ${k}\n`);
    }
    // The access proxy runs in both workers: a CONNECT lands on either, and reaches a forward
    // served by the other through the relay between workers.
    const key = await gw.groupKey('other', 'g');
    const proxy = Number(
      (await gw.output.wait(/"event":"gateway.started".*"access_proxy":"127\.0\.0\.1:(\d+)"/))[1],
    );
    const auth = `Basic ${Buffer.from(`other:${key}`).toString('base64')}`;
    for (const f of forwards) {
      const repo = f.label.split('/')[1];
      for (let k = 0; k < 4; k++) {
        const got = await connectThrough(proxy, `${repo}.g.other:1`, auth, `proxy ${f.label} ${k}\n`);
        assert.equal(got, `proxy ${f.label} ${k}\n`);
      }
    }
  });

  test('a cap reached on the worker serving a repository answers a CONNECT on either worker with 429 and the count, not a 502', async () => {
    const f = (await forwardsOf(gw, 'other')).find((x) => x.label === 'g/r0')!;
    const key = await gw.groupKey('other', 'g');
    const proxy = Number(
      (await gw.output.wait(/"event":"gateway.started".*"access_proxy":"127\.0\.0\.1:(\d+)"/))[1],
    );
    const auth = `Basic ${Buffer.from(`other:${key}`).toString('base64')}`;
    /** A CONNECT's whole answer (read until the proxy closes). */
    const answerTo = () =>
      new Promise<string>((resolve, reject) => {
        const s = net.connect({ host: '127.0.0.1', port: proxy });
        let got = '';
        s.on('data', (c: Buffer) => {
          got += c.toString();
          if (/^HTTP\/1\.1 200 /.test(got)) s.destroy();
        });
        s.on('close', () => resolve(got));
        s.on('error', reject);
        s.write(
          `CONNECT r0.g.other:1 HTTP/1.1\r\nHost: r0.g.other:1\r\nProxy-Authorization: ${auth}\r\n\r\n`,
        );
      });
    await gw.tether(['tenants', 'change', '--max-connections', '1', 'other']);
    const held = net.connect({ host: '127.0.0.1', port: f.port });
    try {
      await nextEvent(held, 'connect');
      held.write('held\n');
      await nextEvent(held, 'data');
      // every worker has the cap once one CONNECT is refused (the change reaches them within 1 s)
      await waitFor(async () => /^HTTP\/1\.1 429 /.test(await answerTo()), { what: 'the cap in force' });
      // the primary takes turns: of four CONNECTs, two land on the worker that does not serve r0
      // and reach the serving one through the relay between workers, which refuses
      for (let k = 0; k < 4; k++) {
        const answer = await answerTo();
        assert.match(answer, /^HTTP\/1\.1 429 /, answer);
        assert.ok(answer.includes('too many connections (1 of 1)'), answer);
      }
    } finally {
      held.destroy();
      await gw.tether(['tenants', 'change', '--max-connections', 'off', 'other']);
    }
  });

  test("a worker's relay port refuses a forged header, junk and a flood of silent connections; nothing reaches a service", async () => {
    const ports = [...gw.output.text().matchAll(/"event":"worker.relay_listening","port":(\d+)/g)].map((m) =>
      Number(m[1]),
    );
    assert.equal(ports.length, 2, 'each worker says where it takes relayed connections');
    const lease = (await forwardsOf(gw, 'other'))[0]!.port;
    const before = accepted;
    const closedAfter = (port: number, send: string) =>
      new Promise<string>((resolve, reject) => {
        const s = net.connect({ host: '127.0.0.1', port });
        let got = '';
        s.on('data', (c) => {
          got += c.toString();
        });
        s.on('error', () => {});
        s.on('close', () => resolve(got));
        s.setTimeout(15_000, () => reject(new Error('the relay port kept the connection open')));
        if (send) s.write(send);
      });
    const from = gw.output.lines.length;
    // a header signed with another key: refused and closed, nothing answered
    const forged = `TETHER-RELAY 2 203.0.113.7 4444 ${lease} ${Date.now()} ${'0'.repeat(64)}\n`;
    assert.equal(await closedAfter(ports[0]!, `${forged}GET / HTTP/1.0\r\n\r\n`), '');
    await gw.output.wait(/"event":"worker.relay_refused".*relay header with a wrong signature/, 10_000, from);
    // anything that is not a header
    assert.equal(await closedAfter(ports[1]!, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'), '');
    // a flood of silent connections: past the bound they are closed at once
    const silent: net.Socket[] = [];
    const closedEarly: Array<Promise<boolean>> = [];
    for (let i = 0; i < 300; i++) {
      const s = net.connect({ host: '127.0.0.1', port: ports[0]! });
      s.on('error', () => {});
      silent.push(s);
      closedEarly.push(new Promise((r) => s.once('close', () => r(true))));
    }
    const early = await Promise.race([
      Promise.all(closedEarly.slice(256)),
      new Promise<null>((r) => setTimeout(() => r(null), 4_000)),
    ]);
    for (const s of silent) s.destroy();
    assert.ok(early, 'connections past the 256 waiting for a header are closed at once');
    assert.equal(accepted, before, 'no forwarded connection reached a service');
    // and the gateway still serves the forward
    const f = (await forwardsOf(gw, 'other'))[0]!;
    assert.equal(await echo(f.port, 'after\n'), 'after\n');
  });

  test('the quota holds across workers: logins on both asking for more than the quota at once get exactly the quota', async () => {
    const mine: Client[] = [];
    for (let i = 0; i < 4; i++) mine.push(await login(gw.sshPort, 'acme', acmeKey));
    clients.push(...mine);
    const results = await Promise.all(
      mine.flatMap((c, ci) => [0, 1, 2].map((k) => forwardIn(c, `q/c${ci}-${k}`))),
    );
    const ok = results.filter((r) => !r.err);
    assert.equal(ok.length, QUOTA, `exactly ${QUOTA} of ${results.length} granted`);
    for (const r of results.filter((x) => x.err)) assert.match(r.err!.message, /Unable to bind/);
    // a scrape right after the grants already counts them (a worker's report goes before its figures)
    assert.match(await metricsOf(gw), new RegExp(`^tether_forwards\\{state="online"\\} ${4 + QUOTA}$`, 'm'));
    const forwards = await waitFor(
      async () => {
        const f = await forwardsOf(gw, 'acme');
        return f.filter((x) => x.state === 'online').length === QUOTA ? f : null;
      },
      { timeout: 10_000, what: `${QUOTA} acme forwards up` },
    );
    assert.equal(forwards.length, QUOTA);
    assert.ok(
      gw.output.lines.some((l) => /quota exceeded \(3 of 3 in use\)/.test(l)),
      'refusals logged with the reason',
    );
  });

  test('removing a tenant ends its sessions on every worker within 1 s; another tenant is untouched', async () => {
    const acmeForwards = (await forwardsOf(gw, 'acme')).filter((f) => f.state === 'online');
    assert.ok(new Set(acmeForwards.map((f) => f.node)).size >= 1);
    // traffic of acme on every forward it holds, so each worker has its series
    for (const f of acmeForwards) assert.equal(await echo(f.port, 'acme\n'), 'acme\n');
    assert.match(await metricsOf(gw), /tether_connections_opened_total\{tenant="acme"\} 3/);
    const acmeClients = clients.slice(4);
    const closed = acmeClients.map((c) => new Promise<number>((r) => c.once('close', () => r(Date.now()))));
    const removedAt = Date.now();
    const r = await gw.tether(['tenants', 'remove', 'acme']);
    assert.equal(r.code, 0, r.stderr);
    const at = await Promise.race([
      Promise.all(closed),
      new Promise<never>((_, rej) =>
        setTimeout(() => rej(new Error('sessions still open after 10 s')), 10_000),
      ),
    ]);
    // measured from the moment the CLI had its answer (the removal is done then)
    const answeredAt = Date.now();
    for (const t of at) assert.ok(t - removedAt < answeredAt - removedAt + 1_000, 'closed within 1 s');
    const other = await forwardsOf(gw, 'other');
    assert.equal(other.filter((f) => f.state === 'online').length, 4, "the other tenant's forwards stay");
    for (const f of other) assert.equal(await echo(f.port, 'still\n'), 'still\n');
    // and its series are gone from every worker's figures (label sets stay bounded)
    const text = await metricsOf(gw);
    assert.doesNotMatch(text, /tenant="acme"/);
    assert.match(text, /tether_connections_opened_total\{tenant="other"\} \d+/);
  });
});

describe('gateway with workers: 2, a worker killed', () => {
  let gw: TestGateway;
  let echoServer: TestServer;
  let connectors: TestConnector[] = [];

  before(async () => {
    gw = await startGateway({ config: { workers: 2 }, ports: 20 });
    echoServer = await startEchoServer();
  });

  after(async () => {
    for (const c of connectors) await c.stop();
    await gw?.stop();
    await echoServer?.close();
  });

  test('kill -9 of a worker: the primary logs and restarts it, its connectors come back on their lease ports, the other worker’s connections carry on', async () => {
    const tenants = ['t1', 't2', 't3', 't4'];
    const keys = await Promise.all(tenants.map((t) => gw.addTenant(t)));
    connectors = await Promise.all(
      tenants.map((t, i) =>
        startConnector({
          gateway: gw.sshPort,
          tenant: t,
          keyFile: keys[i]!,
          repositories: { g: { echo: `tcp://127.0.0.1:${echoServer.port}` } },
        }),
      ),
    );
    const ports = await Promise.all(connectors.map((c) => c.leasePort('g/echo')));
    const nodeOf = async (t: string) => (await forwardsOf(gw, t)).find((f) => f.label === 'g/echo')?.node;
    const nodes = await Promise.all(tenants.map(nodeOf));
    assert.ok(nodes.includes('worker-1') && nodes.includes('worker-2'), `sessions on both workers: ${nodes}`);
    const pids = gw.workerPids();
    const victim = 1; // worker-1's pid is the first one listed
    const survivors = tenants.filter((_, i) => nodes[i] !== `worker-${victim}`);
    const victims = tenants.filter((_, i) => nodes[i] === `worker-${victim}`);
    // A connection open through a forward on the other worker, before the kill
    const held = net.connect({ host: '127.0.0.1', port: ports[tenants.indexOf(survivors[0]!)]! });
    await nextEvent(held, 'connect');
    const heldEcho = (text: string) =>
      new Promise<string>((resolve, reject) => {
        let got = '';
        const t = setTimeout(
          () => reject(new Error(`held connection: no echo (got ${JSON.stringify(got)})`)),
          10_000,
        );
        const on = (c: Buffer) => {
          got += c.toString();
          if (got.length >= text.length) {
            clearTimeout(t);
            held.off('data', on);
            resolve(got);
          }
        };
        held.on('data', on);
        held.write(text);
      });
    assert.equal(await heldEcho('before\n'), 'before\n');
    // Admin writes race the kill: each is a tenant change the primary passes to every worker,
    // also to the one dying (a message to a worker whose pipe just closed fails as an 'error'
    // event on it: unhandled, it ended the primary and the whole gateway).
    let writing = true;
    let acked = 0;
    const writers = [0, 1, 2].map(async (w) => {
      for (let i = 0; writing; i++) {
        const r = await gw.api('POST', '/v1/tenants', { id: `race-${w}-${i}` });
        if (r.status === 201) acked++;
      }
    });
    await waitFor(() => acked >= 3, { what: 'admin writes under way' });
    const from = gw.output.lines.length;
    process.kill(pids[victim - 1]!, 'SIGKILL');
    await gw.output.wait(/"event":"gateway.worker_exited","worker":1.*"signal":"SIGKILL"/, 10_000, from);
    await gw.output.wait(/"event":"gateway.worker_started","worker":1/, 30_000, from);
    writing = false;
    await Promise.all(writers);
    assert.equal(gw.process.exitCode, null, `the primary is still running: ${gw.errors.text()}`);
    // the survivors' held connection was not touched
    assert.equal(await heldEcho('after\n'), 'after\n');
    held.destroy();
    // the killed worker's connectors reconnect (to either worker) and keep their lease ports
    for (const t of victims) {
      const i = tenants.indexOf(t);
      await waitFor(
        async () => {
          const f = (await forwardsOf(gw, t)).find((x) => x.label === 'g/echo');
          return f?.state === 'online' ? f : null;
        },
        { timeout: 30_000, what: `${t} back online` },
      );
      assert.equal(await connectors[i]!.leasePort('g/echo'), ports[i], `${t} keeps its lease port`);
      assert.equal(await echo(ports[i]!, `back ${t}\n`), `back ${t}\n`);
    }
    for (const t of survivors) {
      const i = tenants.indexOf(t);
      assert.equal(await echo(ports[i]!, `still ${t}\n`), `still ${t}\n`);
    }
    // /metrics (the primary) is the whole gateway's: every worker's sessions, the restart counted
    const text = await waitFor(
      async () => {
        const body = await metricsOf(gw);
        return /^tether_sessions 4$/m.test(body) ? body : null;
      },
      { timeout: 10_000, what: 'tether_sessions 4 in /metrics' },
    );
    assert.match(text, /^tether_worker_restarts_total 1$/m);
    assert.match(text, /^tether_forwards\{state="online"\} 4$/m);
    assert.match(
      text,
      new RegExp(`^tether_tenants ${4 + acked}$`, 'm'),
      'store figures counted once, not once per process',
    );
  });
});

describe('gateway with workers: 2, every front door', () => {
  let gw: TestGateway;
  let sshd: TestSshd;
  let web: TestServer & { requests: number };
  let connector: TestConnector;
  let groupKey: string;

  before(async () => {
    [sshd, web] = await Promise.all([startSshd(), startHttpServer('web')]);
    gw = await startGateway({
      config: {
        workers: 2,
        // callers must land on both workers: the primary spreads them (the kernel need not)
        worker_accept: 'primary',
        log: { level: 'debug' },
        access_proxy: { listen: '127.0.0.1:0' },
        http_proxy: {
          listen: '127.0.0.1:0',
          routes: [
            {
              name: 'wiki',
              path_prefix: '/wiki',
              strip_prefix: true,
              to: 'tenant://acme/grp/web',
              auth: { type: 'group-key' },
            },
          ],
        },
        ssh_proxy: {
          listen: '127.0.0.1:0',
          realms: {
            tenant: {
              type: 'tenant',
              user: sshd.user,
              private_key_file: sshd.clientKeyFile,
              targets: { 'box.grp.acme': { host_fingerprint: sshd.fingerprint } },
            },
          },
        },
      },
    });
    const keyFile = await gw.addTenant('acme');
    connector = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile,
      repositories: { grp: { box: `ssh://127.0.0.1:${sshd.port}`, web: `http://127.0.0.1:${web.port}` } },
    });
    groupKey = await gw.groupKey('acme', 'grp');
  });

  after(async () => {
    await connector?.stop();
    await gw?.stop();
    await sshd?.stop();
    await web?.close();
  });

  /** Which workers logged a line of `event` since line `from` (their `worker` field). */
  const workersLogging = (event: string, from: number) =>
    new Set(
      gw.output.lines
        .slice(from)
        .filter((l) => l.includes(`"event":"${event}"`))
        .map((l) => (JSON.parse(l) as { worker?: number }).worker),
    );

  test('one session serves the repositories, and the HTTP front door, the access proxy and the SSH front door reach them from both workers', async () => {
    // right after the connector heard both were granted: a worker reports a burst of grants at
    // most every 20 ms, and the primary's tenant view first lets the workers send what they hold
    const served = (await forwardsOf(gw, 'acme')).map((f) => f.node);
    assert.ok(
      served.every((n) => n),
      `both repositories in the primary's view at once: ${served}`,
    );
    assert.equal(new Set(served).size, 1, `one connector session, on one worker: ${served}`);
    const auth = `Basic ${Buffer.from(`acme:${groupKey}`).toString('base64')}`;
    // HTTP front door: callers land on either worker; the one without the session relays
    const httpPort = Number(
      (await gw.output.wait(/"event":"gateway.started".*"http_proxy":"127\.0\.0\.1:(\d+)"/))[1],
    );
    let from = gw.output.lines.length;
    for (let i = 0; i < 6; i++) {
      // a new connection each time (node's agent would keep one alive)
      const r = await request(httpPort, {
        path: `/wiki/page-${i}`,
        headers: { authorization: auth, connection: 'close' },
      });
      assert.equal(r.status, 200, r.body);
      assert.match(r.body, new RegExp(`hello from web /page-${i}`));
    }
    await waitFor(async () => workersLogging('http_proxy.request', from).size === 2 || null, {
      timeout: 10_000,
      what: 'HTTP front-door requests served by both workers',
    });
    // access proxy, plain HTTP (absolute form) and CONNECT
    const proxy = Number(
      (await gw.output.wait(/"event":"gateway.started".*"access_proxy":"127\.0\.0\.1:(\d+)"/))[1],
    );
    from = gw.output.lines.length;
    for (let i = 0; i < 4; i++) {
      const r = await run('curl', [
        '-sS',
        '-m',
        '10',
        '-x',
        `http://127.0.0.1:${proxy}`,
        '-U',
        `acme:${groupKey}`,
        `http://web.grp.acme/p${i}`,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `hello from web /p${i}\n`);
    }
    await waitFor(async () => workersLogging('access_proxy.allowed', from).size === 2 || null, {
      timeout: 10_000,
      what: 'access-proxy requests served by both workers',
    });
    // SSH front door, tenant realm: ssh to the repository's sshd
    const client = new PasswordClient(await sshProxyPort(gw));
    from = gw.output.lines.length;
    for (let i = 0; i < 4; i++) {
      const r = await client.ssh('tenant:box.grp.acme/0', groupKey, ['127.0.0.1', `echo through-${i}`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), `through-${i}`);
    }
    await waitFor(async () => workersLogging('ssh_proxy.target.connected', from).size === 2 || null, {
      timeout: 10_000,
      what: 'SSH front-door logins served by both workers',
    });
  });
});

/** A CONNECT through the access proxy; resolves with what the repository echoed. */
function connectThrough(proxyPort: number, authority: string, auth: string, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: proxyPort });
    let buf = '';
    let open = false;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`CONNECT ${authority}: no answer within 15 s (got ${JSON.stringify(buf)})`));
    }, 15_000);
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: ${auth}\r\n\r\n`);
    s.on('data', (c) => {
      buf += c.toString();
      if (!open) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const status = buf.slice(0, buf.indexOf('\r\n'));
        if (!/ 200 /.test(status)) {
          clearTimeout(timer);
          s.destroy();
          reject(new Error(`CONNECT ${authority}: ${status}`));
          return;
        }
        open = true;
        buf = buf.slice(end + 4);
        s.write(text);
      }
      if (buf.length >= text.length) {
        clearTimeout(timer);
        s.destroy();
        resolve(buf);
      }
    });
  });
}

describe('gateway with workers: 2, the TLS transport', () => {
  let gw: TestGateway;
  let echoServer: TestServer;
  const connectors: TestConnector[] = [];

  before(async () => {
    const dir = tempDir('tether-workers-tls-');
    const ca = await makeCa(dir, 'Tether Test CA');
    const cert = await makeServerCert(dir, ca, { names: ['127.0.0.1'], file: 'gw' });
    [gw, echoServer] = await Promise.all([
      startGateway({
        config: {
          workers: 2,
          worker_accept: 'primary', // sessions on both workers: the primary spreads them
          tunnel: { tls: { listen: '127.0.0.1:0', cert: cert.certFile, key: cert.keyFile } },
        },
      }),
      startEchoServer(),
    ]);
    const key = await gw.addTenant('acme');
    const tls = startedLine(gw).tunnel_tls!;
    // several connectors: the operating system spreads them over both workers, each of which
    // asks the primary for the connection's unauthenticated slot before it speaks SSH (a wait
    // during which what the TLS transport already read must not be lost)
    for (let i = 0; i < 4; i++)
      connectors.push(
        await startConnector({
          gateway: tls,
          tenant: 'acme',
          keyFile: key,
          repositories: { g: { [`echo${i}`]: `tcp://127.0.0.1:${echoServer.port}` } },
          config: { gateway_ca: ca.certFile },
        }),
      );
  });

  after(async () => {
    for (const c of connectors) await c.stop();
    await gw?.stop();
    await echoServer?.close();
  });

  test('connectors over tls:// land on both workers and forward traffic', async () => {
    for (const [i, c] of connectors.entries()) {
      const port = await c.leasePort(`g/echo${i}`);
      const payload = Buffer.alloc(64 * 1024, i);
      assert.ok((await tcpExchange(port, payload, payload.length)).equals(payload));
    }
    const nodes = new Set((await forwardsOf(gw, 'acme')).map((f) => f.node));
    assert.deepEqual([...nodes].sort(), ['worker-1', 'worker-2'], 'sessions on both workers');
  });
});

describe('gateway with workers: 2 and worker_accept: os', () => {
  let gw: TestGateway;
  const clients: Client[] = [];

  before(async () => {
    gw = await startGateway({ config: { workers: 2, worker_accept: 'os' }, ports: 20 });
  });

  after(async () => {
    for (const c of clients) c.end();
    await gw?.stop();
  });

  test('the worker serving a forward accepts its lease port itself, and every forward is reached', async () => {
    const key = await gw.addTenant('acme');
    const forwards = await fourForwards(gw, 'acme', key, clients);
    const workers = gw.workerPids();
    assert.equal(workers.length, 2);
    // logins are still the primary's to spread, in turn: four in a row land two on each worker
    assert.deepEqual(listenersOf(gw.sshPort, [gw.process.pid!, ...workers]), [gw.process.pid!]);
    const perWorker = new Map<string, number>();
    for (const f of forwards) perWorker.set(f.node ?? '', (perWorker.get(f.node ?? '') ?? 0) + 1);
    assert.deepEqual([...perWorker].sort(), [
      ['worker-1', 2],
      ['worker-2', 2],
    ]);
    for (const f of forwards) {
      const serving = workers[Number(/^worker-(\d)$/.exec(f.node ?? '')?.[1]) - 1];
      assert.ok(serving, `served by a worker: ${f.node}`);
      const holders = listenersOf(f.port, workers);
      assert.deepEqual(holders, [serving], `${f.label} on ${f.node}: only its worker accepts`);
      for (let k = 0; k < 3; k++)
        assert.equal(await echo(f.port, `raw ${f.label} ${k}\n`), `raw ${f.label} ${k}\n`);
    }
  });
  test('kill -9 of a worker: once it is back it asks for the tunnel port again, and new logins reach both workers', async () => {
    // the sessions on the killed worker end with a reset: not an error of this test
    for (const c of clients) c.on('error', () => {});
    const key = await gw.addTenant('beta');
    const from = gw.output.lines.length;
    process.kill(gw.workerPids()[0]!, 'SIGKILL');
    await gw.output.wait(/"event":"gateway.worker_exited","worker":1.*"signal":"SIGKILL"/, 10_000, from);
    // ready only once its tunnel server has the primary's answer
    await gw.output.wait(/"event":"gateway.worker_started","worker":1/, 30_000, from);
    const mine: Client[] = [];
    for (let i = 0; i < 2; i++) mine.push(await login(gw.sshPort, 'beta', key));
    clients.push(...mine);
    for (const g of await Promise.all(mine.map((c, i) => forwardIn(c, `g/k${i}`))))
      assert.equal(g.err, undefined);
    const forwards = await waitFor(
      async () => {
        const f = await forwardsOf(gw, 'beta');
        return f.filter((x) => x.state === 'online').length === 2 ? f : null;
      },
      { timeout: 10_000, what: 'two beta forwards online' },
    );
    assert.deepEqual(
      forwards.map((f) => f.node).sort(),
      ['worker-1', 'worker-2'],
      'one login on each worker',
    );
    for (const f of forwards) assert.equal(await echo(f.port, `back ${f.label}\n`), `back ${f.label}\n`);
  });
});
