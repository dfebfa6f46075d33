/**
 * The HTTP front door to a tenant's service over a long link: a delay relay of our own
 * (test/helpers/delay-relay.ts) between the connector and the gateway, a small HTTP service
 * behind the connector, and callers that send their requests one after another over a keep-alive
 * connection (as an application's HTTP client does). Reports the median latency of a request and
 * the requests/s of 8 such callers at once, per one-way delay, and with `--bin-a <old tether.js>`
 * the same for another gateway build in alternating rounds (before and after).
 *
 *   npm run build && npx tsx bench/http-tenant.ts [--delay 0,25] [--rounds 3] [--requests 40]
 *       [--bin-a /path/to/old/dist/bin/tether.js]
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type Gateway, startConnector, startGateway } from './lib/paths.js';
import { type Child, median, ROOT, round, start, stopAll } from './lib/procs.js';

const RELAY = join(ROOT, 'test/helpers/delay-relay.ts');

async function relay(to: number, delayMs: number): Promise<Child> {
  const child = start(process.execPath, [
    '--import',
    'tsx',
    RELAY,
    '--to',
    `127.0.0.1:${to}`,
    '--delay',
    String(delayMs),
    '--rate',
    '1000',
  ]);
  await child.wait(/\{"port":(\d+)\}/, 60_000);
  return child;
}

function service(): Promise<{ port: number; close(): void }> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'));
  });
  return new Promise((r) =>
    server.listen(0, '127.0.0.1', () =>
      r({ port: (server.address() as AddressInfo).port, close: () => server.close() }),
    ),
  );
}

/** One caller: `n` requests in turn over one keep-alive connection; the latency of each, in ms. */
async function caller(port: number, n: number): Promise<number[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const out: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await new Promise<void>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path: '/svc/x', agent }, (res) => {
            res.resume();
            res.on('end', () =>
              res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`)),
            );
          })
          .on('error', reject);
      });
      out.push(performance.now() - t0);
    }
  } finally {
    agent.destroy();
  }
  return out;
}

interface Target {
  name: string;
  door: number;
  gateway: Gateway;
}

async function target(
  name: string,
  bin: string | undefined,
  delayMs: number,
  svcPort: number,
): Promise<Target> {
  const doorPort = await new Promise<number>((r) => {
    const s = http.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => r(p));
    });
  });
  const gateway = await startGateway({
    ...(bin ? { bin } : {}),
    config: {
      http_proxy: {
        listen: `127.0.0.1:${doorPort}`,
        routes: [
          { path_prefix: '/svc', strip_prefix: true, to: 'tenant://acme/web/app', auth: { type: 'none' } },
        ],
      },
    },
  });
  const key = await gateway.addTenant('acme');
  const link = await relay(gateway.sshPort, delayMs);
  const port = Number(/\{"port":(\d+)\}/.exec(link.output())![1]);
  await startConnector(gateway, 'acme', key, { 'web/app': svcPort }, { gateway: `127.0.0.1:${port}` });
  return { name, door: doorPort, gateway };
}

async function main(): Promise<void> {
  const { values: a } = parseArgs({
    options: {
      delay: { type: 'string', default: '0,25' },
      rounds: { type: 'string', default: '3' },
      requests: { type: 'string', default: '40' },
      'bin-a': { type: 'string' },
    },
  });
  const rounds = Number(a.rounds);
  const n = Number(a.requests);
  const svc = await service();
  try {
    for (const delay of a.delay!.split(',').map(Number)) {
      const targets = [await target('this build', undefined, delay, svc.port)];
      if (a['bin-a']) targets.push(await target('build a', a['bin-a'], delay, svc.port));
      const lat = new Map<string, number[]>();
      const rps = new Map<string, number[]>();
      for (let r = 0; r < rounds; r++) {
        const order = r % 2 ? [...targets].reverse() : targets;
        for (const t of order) {
          await caller(t.door, 3); // warm: the session, the route, the first channel
          const one = await caller(t.door, n);
          const t0 = performance.now();
          const many = await Promise.all(Array.from({ length: 8 }, () => caller(t.door, n)));
          const s = (performance.now() - t0) / 1000;
          const m = median(one);
          const q = (8 * n) / s;
          (lat.get(t.name) ?? lat.set(t.name, []).get(t.name)!).push(m);
          (rps.get(t.name) ?? rps.set(t.name, []).get(t.name)!).push(q);
          console.log(
            `round ${r + 1} delay ${delay} ms one way: ${t.name.padEnd(10)} one caller median ${round(m, 2)} ms/request; 8 callers ${Math.round(q)} req/s (median latency ${round(median(many.flat()), 2)} ms)`,
          );
        }
      }
      for (const t of targets)
        console.log(
          `delay ${delay} ms one way (RTT ${2 * delay} ms): ${t.name}: median ${round(median(lat.get(t.name)!), 2)} ms/request, ${Math.round(median(rps.get(t.name)!))} req/s with 8 callers`,
        );
      for (const t of targets) await t.gateway.stop();
    }
  } finally {
    svc.close();
    await stopAll();
  }
}

await main();
