// test-timeout: 420000 (two members restarted in turn, each drain waiting for a 256 MiB download)
/**
 * A cluster of two members behind haproxy (the haproxy.cfg of docs/operations.md, with test
 * addresses), restarted one after the other with SIGTERM while a caller runs 20 requests/s
 * through one lease port and a download runs through another: no request fails, the download
 * arrives whole (SHA-256), and every connector is back with its lease ports.
 *
 * The download is not cut because the drain waits for it: the member that carries it is
 * restarted first, while the download runs (drain_timeout 120 s here; the download is paced to
 * last several seconds so it spans the drain). 256 MiB in `npm run soak`;
 * TETHER_ROLLING_DOWNLOAD_MIB=1024 runs the full 1 GiB (TETHER_ROLLING_PACE_MIBS sets the pace,
 * 0 = as fast as it goes).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { startHttpServer, type TestServer } from '../helpers/servers.js';
import {
  freePort,
  freePortRange,
  OutputWatcher,
  ROOT,
  stopProcess,
  tempDir,
  waitFor,
} from '../helpers/util.js';

const MIB = 1024 * 1024;
const DOWNLOAD_MIB = Number(process.env.TETHER_ROLLING_DOWNLOAD_MIB ?? 256);
const PACE_MIBS = Number(process.env.TETHER_ROLLING_PACE_MIBS ?? 24);
const IPS = ['127.0.0.2', '127.0.0.3'] as const;

/** The haproxy.cfg block of docs/operations.md, on test addresses and ports. */
function haproxyConfig(o: {
  tunnel: number;
  leases: { low: number; high: number };
  socket: string;
  lbTunnel: number;
}) {
  const doc = readFileSync(join(ROOT, 'docs/operations.md'), 'utf8');
  const m = /```haproxy\n([\s\S]*?)```/.exec(doc);
  assert.ok(m, 'docs/operations.md has a haproxy example');
  return m[1]!
    .replace('/run/haproxy/admin.sock', o.socket)
    .replace('bind 0.0.0.0:2222', `bind 127.0.0.1:${o.lbTunnel}`)
    .replace('bind 0.0.0.0:2200-5199', `bind 127.0.0.1:${o.leases.low}-${o.leases.high}`)
    .replaceAll('10.0.0.5', IPS[0])
    .replaceAll('10.0.0.6', IPS[1])
    .replaceAll(':2222', `:${o.tunnel}`)
    .replaceAll('port 2222', `port ${o.tunnel}`);
}

/** haproxy's view of a server ("UP", "DOWN", …) from its stats socket. */
function serverStatus(socket: string, backend: string, server: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socket);
    let text = '';
    s.on('data', (c: Buffer) => {
      text += c.toString();
    });
    s.on('end', () => {
      const row = text.split('\n').find((l) => l.startsWith(`${backend},${server},`));
      resolve(row?.split(',')[17] ?? '');
    });
    s.on('error', reject);
    s.end('show stat\n');
  });
}

/** A tunnel port free on both member addresses (the docs' members share one port number). */
async function sharedPort(): Promise<number> {
  for (;;) {
    const p = await freePort(IPS[0]);
    const free = await new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen({ host: IPS[1], port: p }, () => srv.close(() => resolve(true)));
    });
    if (free) return p;
  }
}

/** Serves `mib` MiB of fixed random data at GET /big; `sha256` is what a whole download hashes to. */
async function startDownloadServer(mib: number): Promise<TestServer & { sha256: string }> {
  const block = randomBytes(MIB);
  const h = createHash('sha256');
  for (let i = 0; i < mib; i++) h.update(block);
  const sha256 = h.digest('hex');
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': mib * MIB });
    let sent = 0;
    const more = () => {
      while (sent < mib) {
        sent++;
        if (!res.write(block)) {
          res.once('drain', more);
          return;
        }
      }
      res.end();
    };
    more();
  });
  await new Promise<void>((r) => server.listen({ host: '127.0.0.1', port: 0 }, () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    sha256,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Downloads through `port`, paced to `paceMiBs` MiB/s (0: unpaced); resolves with the hash and size. */
function download(
  port: number,
  paceMiBs: number,
  progress: { bytes: number },
): Promise<{ sha256: string; bytes: number; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const req = http.get({ host: '127.0.0.1', port, path: '/big', agent: false }, (res) => {
      const h = createHash('sha256');
      res.on('data', (c: Buffer) => {
        h.update(c);
        progress.bytes += c.length;
        if (paceMiBs > 0) {
          const ahead = progress.bytes / (paceMiBs * MIB) - (Date.now() - t0) / 1000;
          if (ahead > 0.05) {
            res.pause();
            setTimeout(() => res.resume(), ahead * 1000);
          }
        }
      });
      res.on('end', () => resolve({ sha256: h.digest('hex'), bytes: progress.bytes, ms: Date.now() - t0 }));
      res.on('error', reject);
    });
    req.on('error', reject);
    // the test ends (or fails) before the download: do not keep the process alive
    req.on('socket', (s) => s.unref());
  });
}

interface Outcome {
  ok: boolean;
  error?: string;
  ms: number;
}

/** 20 requests/s, each on a new connection through `port`, until stopped. */
function caller(port: number) {
  const outcomes: Outcome[] = [];
  const pending = new Set<Promise<void>>();
  const one = () => {
    const t0 = Date.now();
    const p = new Promise<void>((resolve) => {
      const req = http.get(
        { host: '127.0.0.1', port, path: '/rate', agent: false, timeout: 30_000 },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => {
            body += c.toString();
          });
          res.on('end', () => {
            const ok = res.statusCode === 200 && body.startsWith('hello from web');
            outcomes.push({ ok, ms: Date.now() - t0, error: ok ? undefined : `${res.statusCode} ${body}` });
            resolve();
          });
          res.on('error', (e) => {
            outcomes.push({
              ok: false,
              error: `${e.message} at ${new Date(t0).toISOString()}`,
              ms: Date.now() - t0,
            });
            resolve();
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', (e) => {
        outcomes.push({
          ok: false,
          error: `${e.message} at ${new Date(t0).toISOString()}`,
          ms: Date.now() - t0,
        });
        resolve();
      });
    });
    pending.add(p);
    void p.finally(() => pending.delete(p));
  };
  const timer = setInterval(one, 50);
  return {
    outcomes,
    stop: async () => {
      clearInterval(timer);
      await Promise.all([...pending]);
    },
  };
}

describe('rolling restart of a two-member cluster behind haproxy', () => {
  let pg: TestPostgres;
  const members: TestGateway[] = [];
  let lb: ReturnType<typeof spawn> | undefined;
  let statsSocket = '';
  let web: TestServer;
  let big: TestServer & { sha256: string };
  const connectors: TestConnector[] = [];

  before(async () => {
    pg = await startPostgres();
    const url = await pg.newDatabase();
    const tunnel = await sharedPort();
    // haproxy first, on a lease range it could bind (another test may take a range chosen as free
    // before it binds): the members then take the same range on their own addresses.
    let range = { low: 0, high: 0 };
    let lbOut: OutputWatcher | undefined;
    const lbTunnel = await freePort();
    for (let attempt = 1; ; attempt++) {
      range = await freePortRange(6);
      const dir = tempDir('tether-haproxy-');
      statsSocket = join(dir, 'admin.sock');
      const cfgFile = join(dir, 'haproxy.cfg');
      writeFileSync(cfgFile, haproxyConfig({ tunnel, leases: range, socket: statsSocket, lbTunnel }));
      lb = spawn('haproxy', ['-f', cfgFile, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
      const out = new OutputWatcher(lb.stderr!);
      const up = await waitFor(
        async () => {
          if (lb!.exitCode !== null) return 'exited';
          return (await serverStatus(statsSocket, 'tether_tunnel', 'gw1').catch(() => '')) ? 'up' : false;
        },
        { what: 'haproxy answering on its stats socket', timeout: 30_000 },
      );
      if (up === 'up') {
        lbOut = out;
        break;
      }
      if (attempt >= 5 || !/Address already in use/.test(out.text()))
        throw new Error(`haproxy exited: ${out.text()}`);
    }
    for (const [i, ip] of IPS.entries()) {
      members.push(
        await startGateway({
          config: {
            store: url,
            drain_timeout: '120s',
            tunnel: { listen: `${ip}:${tunnel}` },
            admin: { listen: `${ip}:0` },
            forwards: { bind: ip, ports: `${range.low}-${range.high}` },
            // heartbeats a loaded machine keeps up with: a reaped member's forwards stop being relayed
            cluster: { node_id: `gw${i + 1}`, advertise: ip, heartbeat: '500ms', dead_after: '5s' },
          },
        }),
      );
    }
    await waitFor(
      async () => {
        if (lb!.exitCode !== null) throw new Error(`haproxy exited: ${lbOut!.text()}`);
        for (const m of ['gw1', 'gw2'])
          if ((await serverStatus(statsSocket, 'tether_tunnel', m)) !== 'UP') return false;
        return true;
      },
      { what: 'haproxy with both members up', timeout: 30_000 },
    );

    web = await startHttpServer('web');
    big = await startDownloadServer(DOWNLOAD_MIB);
    const add = await members[0]!.tether(['tenants', 'add', 'acme']);
    assert.equal(add.code, 0, add.stderr);
    const keyFile = join(members[0]!.dir, 'acme.key');
    writeFileSync(keyFile, add.stdout, { mode: 0o600 });
    const both: Array<Record<string, Record<string, string>>> = [
      { grp: { web: `http://127.0.0.1:${web.port}` } },
      { grp: { big: `http://127.0.0.1:${big.port}` } },
    ];
    for (const repos of both) {
      connectors.push(
        await startConnector({
          gateway: `127.0.0.1:${lbTunnel}`,
          tenant: 'acme',
          keyFile,
          config: { gateway_fingerprint: members[0]!.hostFingerprint },
          repositories: repos,
        }),
      );
    }
  });

  after(async () => {
    for (const c of connectors) await c.stop();
    if (lb) await stopProcess(lb, 2_000);
    for (const m of members) await m.stop();
    await web?.close();
    await big?.close();
    await pg?.stop();
  });

  test('each member restarted in turn: 0 failed requests at 20/s, the download completes with the right SHA-256, the connectors come back with the same lease ports', async (t) => {
    const webPort = await connectors[0]!.leasePort('grp/web');
    const bigPort = await connectors[1]!.leasePort('grp/big');
    // both lease ports answer through haproxy before the load starts
    await waitFor(
      () =>
        new Promise<boolean>((resolve) => {
          http
            .get({ host: '127.0.0.1', port: webPort, path: '/warm', agent: false }, (res) => {
              res.resume();
              resolve(res.statusCode === 200);
            })
            .on('error', () => resolve(false));
        }),
      { what: 'the web lease through haproxy', timeout: 20_000 },
    );
    const load = caller(webPort);
    const progress = { bytes: 0 };
    const dl = download(bigPort, PACE_MIBS, progress);
    dl.catch(() => {});
    t.after(() => load.stop());
    await waitFor(() => progress.bytes >= 4 * MIB, { what: 'the download under way', timeout: 30_000 });

    // The member that accepted the download from haproxy carries it (and relays it to the
    // connector's member if that is the other one): restart it first, while it runs.
    const carrier = members.findIndex((m) =>
      m.output.lines.some(
        (l) => l.includes('"event":"connection.opened"') && l.includes(`"port":${bigPort}`),
      ),
    );
    assert.ok(carrier >= 0, 'a member accepted the download');
    const order = [carrier, 1 - carrier];
    const saved: string[] = [];
    for (const i of order) {
      const m = members[i]!;
      const from = m.output.lines.length;
      const before = progress.bytes;
      const exited = new Promise<number | null>((r) => m.process.once('exit', (code) => r(code)));
      const at = Date.now();
      m.process.kill('SIGTERM');
      const code = await exited;
      const lines = m.output.lines.slice(from).join('\n');
      const drained = /"event":"gateway.drained"[^\n]*/.exec(lines)?.[0] ?? '(no gateway.drained line)';
      t.diagnostic(
        `gw${i + 1}: exit ${code} ${Date.now() - at} ms after SIGTERM; download ${((progress.bytes - before) / MIB).toFixed(0)} MiB during the drain; ${drained}`,
      );
      assert.equal(code, 0);
      assert.match(drained, /"cut":0/);
      saved.push(`### gw${i + 1} before restart\n${m.output.lines.join('\n')}`);
      await m.restart();
      await waitFor(
        async () =>
          (await serverStatus(statsSocket, 'tether_tunnel', `gw${i + 1}`)) === 'UP' &&
          (await serverStatus(statsSocket, 'tether_leases', `gw${i + 1}`)) === 'UP',
        { what: `haproxy to see gw${i + 1} up again`, timeout: 60_000 },
      );
      // every connector holds its lease again before the next member goes
      assert.equal(await connectors[0]!.leasePort('grp/web', 60_000), webPort);
      assert.equal(await connectors[1]!.leasePort('grp/big', 60_000), bigPort);
    }
    const got = await dl;
    await load.stop();
    const failed = load.outcomes.filter((o) => !o.ok);
    const slowest = Math.max(...load.outcomes.map((o) => o.ms));
    t.diagnostic(
      `${load.outcomes.length} requests, ${failed.length} failed, slowest ${slowest} ms; download ${got.bytes / MIB} MiB in ${got.ms} ms`,
    );
    if (failed.length > 0) {
      // every member's log (also from before its restart) and the connectors', for the post-mortem
      const dir = mkdtempSync(join(tmpdir(), 'tether-rolling-failed-')); // kept after the run
      writeFileSync(join(dir, 'failed.json'), JSON.stringify(failed, null, 1));
      writeFileSync(join(dir, 'saved.log'), saved.join('\n'));
      for (const [i, m] of members.entries())
        writeFileSync(join(dir, `gw${i + 1}-now.log`), m.output.lines.join('\n'));
      for (const [i, c] of connectors.entries()) writeFileSync(join(dir, `conn${i}.log`), c.output.text());
      t.diagnostic(`logs in ${dir}`);
    }
    assert.deepEqual(failed, [], 'no request failed');
    assert.ok(load.outcomes.length >= 100, `only ${load.outcomes.length} requests ran`);
    assert.equal(got.bytes, DOWNLOAD_MIB * MIB);
    assert.equal(got.sha256, big.sha256, 'the download arrived whole');
    // the connectors moved at once: none waited for a backoff
    for (const c of connectors) assert.match(c.output.text(), /"event":"connector.moving"/);
  });
});
