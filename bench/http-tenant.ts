/**
 * The HTTP front door to a tenant's service over a long link: a delay relay of our own
 * (test/helpers/delay-relay.ts) between the connector and the gateway, a small HTTP service
 * behind the connector, and callers that send their requests one after another over a keep-alive
 * connection (as an application's HTTP client does). Reports the median latency of a request and
 * the requests/s of 8 such callers at once, per one-way delay, next to `direct`: the same callers
 * reaching the service itself through a relay of the same delay (one round trip per request, the
 * floor). With `--bin-a <old tether.js>` another gateway build is measured in the same rounds.
 * Paths alternate round by round.
 *
 *   npm run build && npx tsx bench/http-tenant.ts [--delay 0,25] [--rounds 3] [--requests 40]
 *       [--bin-a /path/to/old/dist/bin/tether.js]
 *   npm run bench -- --only http-tenant        (bench/run.ts calls run({ quick }))
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type Gateway, startConnector, startGateway } from './lib/paths.js';
import { freePort, median, round, stopAll } from './lib/procs.js';
import { relay } from './lib/relay.js';

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
  /** Where callers send their requests. */
  door: number;
  gateway?: Gateway;
}

async function target(
  name: string,
  bin: string | undefined,
  delayMs: number,
  svcPort: number,
): Promise<Target> {
  const doorPort = await freePort();
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
  const link = await relay(gateway.sshPort, delayMs, 1000);
  await startConnector(gateway, 'acme', key, { 'web/app': svcPort }, { gateway: `127.0.0.1:${link.port}` });
  return { name, door: doorPort, gateway };
}

export interface HttpTenantLink {
  one_way_delay_ms: number;
  rounds: number;
  requests_per_caller: number;
  /** Median over the rounds of one caller's median latency per request, by path. */
  ms_per_request: Record<string, number>;
  /** Median over the rounds of 8 callers' requests/s, by path. */
  rps_8_callers: Record<string, number>;
  /** Tether's latency per request over the direct path's (1.0: nothing added to the round trip). */
  latency_vs_direct: number;
  ratio_rps_vs_direct: number;
}

/** Measures every path over links of the given one-way delays. */
export async function httpTenant(o: {
  delays: number[];
  rounds: number;
  requests: number;
  binA?: string;
  log?: (s: string) => void;
}): Promise<{ links: HttpTenantLink[] }> {
  const log = o.log ?? console.log;
  const svc = await service();
  const links: HttpTenantLink[] = [];
  try {
    for (const delay of o.delays) {
      const direct = await relay(svc.port, delay, 1000);
      const paths: Target[] = [{ name: 'direct', door: direct.port }];
      paths.push(await target('tether', undefined, delay, svc.port));
      if (o.binA) paths.push(await target('tether-a', o.binA, delay, svc.port));
      const lat = new Map<string, number[]>();
      const rps = new Map<string, number[]>();
      for (let r = 0; r < o.rounds; r++) {
        for (const t of r % 2 ? [...paths].reverse() : paths) {
          await caller(t.door, 3); // warm: the session, the route, the first channel
          const one = await caller(t.door, o.requests);
          const t0 = performance.now();
          const many = await Promise.all(Array.from({ length: 8 }, () => caller(t.door, o.requests)));
          const q = (8 * o.requests) / ((performance.now() - t0) / 1000);
          const m = median(one);
          (lat.get(t.name) ?? lat.set(t.name, []).get(t.name)!).push(m);
          (rps.get(t.name) ?? rps.set(t.name, []).get(t.name)!).push(q);
          log(
            `round ${r + 1}, ${delay} ms one way: ${t.name.padEnd(8)} one caller ${round(m, 2)} ms/request; 8 callers ${Math.round(q)} req/s (median ${round(median(many.flat()), 2)} ms)`,
          );
        }
      }
      const ms: Record<string, number> = {};
      const qs: Record<string, number> = {};
      for (const t of paths) {
        ms[t.name] = round(median(lat.get(t.name)!), 2);
        qs[t.name] = Math.round(median(rps.get(t.name)!));
      }
      links.push({
        one_way_delay_ms: delay,
        rounds: o.rounds,
        requests_per_caller: o.requests,
        ms_per_request: ms,
        rps_8_callers: qs,
        latency_vs_direct: round(ms.tether! / ms.direct!, 2),
        ratio_rps_vs_direct: round(qs.tether! / qs.direct!, 2),
      });
      for (const t of paths) await t.gateway?.stop();
      await direct.child.stop();
    }
  } finally {
    svc.close();
  }
  return { links };
}

/**
 * `npm run bench` section: 0 and 25 ms one way (25 ms only with --quick). The ratios to the direct
 * path are flat keys, as bench/run.ts reads them for its table and chart.
 */
export async function run(o: { quick: boolean }): Promise<Record<string, unknown>> {
  const r = await httpTenant({
    delays: o.quick ? [25] : [0, 25],
    rounds: o.quick ? 1 : 3,
    requests: o.quick ? 15 : 30,
  });
  const out: Record<string, unknown> = { links: r.links };
  for (const l of r.links)
    out[`ratio_rps_vs_direct_${l.one_way_delay_ms}_ms_one_way`] = l.ratio_rps_vs_direct;
  return out;
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
  try {
    const r = await httpTenant({
      delays: a.delay!.split(',').map(Number),
      rounds: Number(a.rounds),
      requests: Number(a.requests),
      ...(a['bin-a'] ? { binA: a['bin-a'] } : {}),
    });
    for (const l of r.links) {
      const paths = Object.keys(l.ms_per_request)
        .map((p) => `${p} ${l.ms_per_request[p]} ms, ${l.rps_8_callers[p]} req/s`)
        .join('; ');
      console.log(
        `${l.one_way_delay_ms} ms one way (RTT ${2 * l.one_way_delay_ms} ms): ${paths}; Tether latency / direct ${l.latency_vs_direct}x`,
      );
    }
  } finally {
    await stopAll();
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
