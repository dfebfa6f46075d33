/**
 * HTTP front door benchmark: requests per second and latency through the front door versus
 * nginx (Debian) as a plain reverse proxy to the same upstream, in the same run.
 *
 *   npx tsc -p tsconfig.build.json && npx tsx bench/http-proxy.ts [--duration 8] [--rounds 2]
 *       [--connections 64] [--nginx-workers 1] [--workers 1] [--client wrk|raw|agent] [--body json|1k]
 *       [--only nginx,frontdoor-none] [--bin-a /path/to/old/dist/bin/tether.js] [--profile]
 *   npm run bench -- --only http-proxy        (bench/run.ts calls run({ quick }))
 *
 * Upstream: nginx answering a small JSON body (`--body 1k`: a 1 KiB text body), and only with
 * the right Basic credential. The targets get the same keep-alive load (N connections, each
 * sending its next request when the last answer arrived): `wrk -t2 -cN` when wrk is installed
 * (`--client wrk`, the default then), else raw sockets from node (`--client raw`). Targets: the
 * upstream directly, nginx proxying to it (keep-alive upstream pool, credential added), the
 * Tether front door (the real `tether gateway` binary) on two routes to the same upstream —
 * `frontdoor-none` (auth none) and `frontdoor-token` (basic-token against a static scrypt token
 * file, the answer cached; the Kloudless setup), both injecting the upstream credential — and
 * node-bare, the smallest node:http proxy, and node-undici, node:http with undici's Pool (the
 * front door's own client) and nothing else, to show how much of the gap is the platform itself.
 * `--bin-a <old dist/bin/tether.js>` adds the same two routes served by another build
 * (`a-frontdoor-none`, `a-frontdoor-token`), measured in the same rounds: before and after.
 * Each line also gives the server processes' CPU time per request, which is steadier than
 * req/s on a shared machine. Results go to bench/results/http-proxy.json.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { binLaunch } from './lib/procs.js';

const ROOT = resolve(import.meta.dirname, '..');
const BIN = join(ROOT, 'dist/bin/tether.js');

export interface HttpProxyBenchOptions {
  /** Seconds measured per target and round. */
  duration: number;
  warmup: number;
  connections: number;
  nginxWorkers: string;
  /** The gateway's `workers` (its front door then runs in each worker; compare with --nginx-workers). */
  workers: string;
  rounds: number;
  /**
   * "wrk": `wrk -t2 -cN` (when installed); "raw": pre-built requests on plain sockets from node
   * (cheap, so the servers get the CPU); "agent": node:http Agent.
   */
  client: 'wrk' | 'raw' | 'agent';
  /** The upstream's answer: a small JSON document (the issue's figure) or 1 KiB of text. */
  body: 'json' | '1k';
  /** Another build of tether, measured beside this one (before/after). */
  binA?: string;
  /** Write CPU profiles of the gateway and of node-undici into bench/results/. */
  profile: boolean;
  /** Only these targets (direct, nginx, frontdoor-none, frontdoor-token, node-bare, node-undici). */
  only?: string[];
  /** Print progress lines. */
  print: (line: string) => void;
}

const DEFAULTS: HttpProxyBenchOptions = {
  duration: 8,
  warmup: 2,
  connections: 64,
  nginxWorkers: '1',
  workers: '1',
  rounds: 2,
  client: hasWrk() ? 'wrk' : 'raw',
  body: 'json',
  profile: false,
  print: (line) => process.stdout.write(`${line}\n`),
};
let O: HttpProxyBenchOptions = DEFAULTS;

function hasWrk(): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => d !== '' && existsSync(join(d, 'wrk')));
}

const JSON_BODY = `${JSON.stringify({ id: 42, name: 'bench', tags: ['a', 'b'], ok: true })}\n`;
const bodyOf = () => (O.body === '1k' ? `${'x'.repeat(1023)}\n` : JSON_BODY);
const EMAIL = 'bench@example.com';
const TOKEN = 'bench-token-0123456789';
const UPSTREAM_USER = 'puller';
const UPSTREAM_PASS = 'upstream-secret';

const children: ChildProcess[] = [];

function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => res(port));
    });
  });
}

async function waitForPort(port: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((res) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        res(true);
      });
      s.once('error', () => res(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function start(cmd: string, argv: string[], env?: NodeJS.ProcessEnv): ChildProcess {
  const p = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'], env: env ?? process.env });
  let err = '';
  p.stderr!.on('data', (c: Buffer) => {
    err += c.toString();
  });
  p.once('exit', (code, sig) => {
    if (code !== 0 && sig === null && !stopping) process.stderr.write(`${cmd} exited with ${code}: ${err}\n`);
  });
  children.push(p);
  return p;
}

let stopping = false;
async function stopAll(): Promise<void> {
  stopping = true;
  await Promise.all(
    children.map(
      (p) =>
        new Promise<void>((r) => {
          if (p.exitCode !== null || p.signalCode !== null) return r();
          p.once('exit', () => r());
          p.kill('SIGTERM');
          setTimeout(() => p.kill('SIGKILL'), 3_000).unref();
        }),
    ),
  );
}

function nginxConf(dir: string, port: number, body: string): string {
  return `
worker_processes ${O.nginxWorkers};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
daemon off;
user root root;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  ${body.replace('PORT', String(port))}
}
`;
}

const BARE_PROXY = `import http from 'node:http';
const [,, listenPort, upPort, auth] = process.argv;
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
http.createServer((req, res) => {
  const up = http.request({ host: '127.0.0.1', port: Number(upPort), path: req.url, method: req.method,
    headers: { host: '127.0.0.1:' + upPort, authorization: 'Basic ' + auth }, agent }, (ures) => {
    res.writeHead(ures.statusCode, ures.headers);
    ures.pipe(res);
  });
  up.on('error', () => res.destroy());
  up.end();
}).listen(Number(listenPort), '127.0.0.1');
`;

/**
 * node-undici: node:http for callers and undici's Pool for the upstream (the front door's URL
 * route client), with nothing else: the floor for a front door built on these two.
 */
const UNDICI_PROXY = (root: string) => `import http from 'node:http';
import { createRequire } from 'node:module';
const { Pool } = createRequire(${JSON.stringify(join(root, 'package.json'))})('undici');
const [,, listenPort, upPort, auth] = process.argv;
const pool = new Pool('http://127.0.0.1:' + upPort, { connections: 256, pipelining: 1 });
const up = ['host', '127.0.0.1:' + upPort, 'authorization', 'Basic ' + auth];
http.createServer((req, res) => {
  pool.dispatch({ path: req.url, method: req.method, headers: up, body: null }, {
    onRequestStart() {},
    onResponseStart(c, status) {
      const raw = c.rawHeaders;
      const h = [];
      for (let i = 0; i < raw.length; i++) h.push(raw[i].toString('latin1'));
      res.writeHead(status, h);
    },
    onResponseData(c, chunk) { res.write(chunk); },
    onResponseEnd() { res.end(); },
    onResponseError() { res.destroy(); },
  });
}).listen(Number(listenPort), '127.0.0.1');
// a clean exit on SIGTERM, so that --cpu-prof (--profile) writes its profile
process.on('SIGTERM', () => process.exit(0));
`;

interface Result {
  target: string;
  /** CPU time the serving processes spent per request (user + system). */
  cpu_us_per_request?: number;
  requests: number;
  errors: number;
  rps: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
}

/** CPU seconds (user + system) a set of processes used so far. */
function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch {}
  }
  return ticks / 100;
}

/** A process and its direct children (nginx: master and workers). */
function withChildren(pid: number): number[] {
  try {
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
    return [pid, ...kids];
  } catch {
    return [pid];
  }
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Keep-alive load: O.connections loops, each sends its next request as soon as the last answer is read. */
async function load(
  target: string,
  port: number,
  path: string,
  headers: http.OutgoingHttpHeaders,
  seconds: number,
  record: boolean,
): Promise<Result> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: O.connections, maxFreeSockets: O.connections });
  const lat = new Float64Array(4_000_000);
  let n = 0;
  let errors = 0;
  let statusErrors = 0;
  const end = performance.now() + seconds * 1000;
  const one = () =>
    new Promise<void>((res) => {
      const t0 = performance.now();
      const req = http.request({ host: '127.0.0.1', port, path, agent, headers }, (r) => {
        if (r.statusCode !== 200) statusErrors++;
        r.on('data', () => {});
        r.on('end', () => {
          if (record && n < lat.length) lat[n] = performance.now() - t0;
          n++;
          res();
        });
      });
      req.on('error', () => {
        errors++;
        res();
      });
      req.end();
    });
  const started = performance.now();
  await Promise.all(
    Array.from({ length: O.connections }, async () => {
      while (performance.now() < end) await one();
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  agent.destroy();
  const sorted = lat.slice(0, Math.min(n, lat.length)).sort();
  return {
    target,
    requests: n,
    errors: errors + statusErrors,
    rps: Math.round(n / elapsed),
    p50_ms: Math.round(percentile(sorted, 50) * 100) / 100,
    p99_ms: Math.round(percentile(sorted, 99) * 100) / 100,
    max_ms: Math.round(percentile(sorted, 100) * 100) / 100,
  };
}

/**
 * The same keep-alive loop on plain sockets: one pre-built request per connection, and just
 * enough response parsing to find the end of each answer (status line, Content-Length).
 */
async function loadRaw(
  target: string,
  port: number,
  path: string,
  headers: Record<string, string>,
  seconds: number,
  record: boolean,
): Promise<Result> {
  const reqBytes = Buffer.from(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('')}\r\n`,
  );
  const lat = new Float64Array(4_000_000);
  let n = 0;
  let errors = 0;
  const end = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from(
      { length: O.connections },
      () =>
        new Promise<void>((done) => {
          const sock = net.connect({ port, host: '127.0.0.1', noDelay: true });
          let buf: Buffer = Buffer.alloc(0);
          let t0 = 0;
          const send = () => {
            if (performance.now() >= end) {
              sock.end();
              return done();
            }
            t0 = performance.now();
            sock.write(reqBytes);
          };
          sock.on('connect', send);
          sock.on('error', () => {
            errors++;
            done();
          });
          sock.on('data', (c: Buffer) => {
            buf = buf.length === 0 ? c : Buffer.concat([buf, c]);
            for (;;) {
              const h = buf.indexOf('\r\n\r\n');
              if (h < 0) return;
              const head = buf.subarray(0, h).toString('latin1');
              const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
              if (!m) {
                errors++;
                sock.destroy();
                return done();
              }
              const total = h + 4 + Number(m[1]);
              if (buf.length < total) return;
              if (!head.startsWith('HTTP/1.1 200')) errors++;
              if (record && n < lat.length) lat[n] = performance.now() - t0;
              n++;
              buf = buf.subarray(total);
              send();
            }
          });
        }),
    ),
  );
  const elapsed = (performance.now() - started) / 1000;
  const sorted = lat.slice(0, Math.min(n, lat.length)).sort();
  return {
    target,
    requests: n,
    errors,
    rps: Math.round(n / elapsed),
    p50_ms: Math.round(percentile(sorted, 50) * 100) / 100,
    p99_ms: Math.round(percentile(sorted, 99) * 100) / 100,
    max_ms: Math.round(percentile(sorted, 100) * 100) / 100,
  };
}

/** `wrk -t2 -cN --latency`: requests per second and the latency percentiles it prints. */
function loadWrk(
  target: string,
  port: number,
  path: string,
  headers: Record<string, string>,
  seconds: number,
): Promise<Result> {
  const argv = ['-t2', `-c${O.connections}`, `-d${Math.max(1, Math.round(seconds))}s`, '--latency'];
  for (const [k, v] of Object.entries(headers)) argv.push('-H', `${k}: ${v}`);
  argv.push(`http://127.0.0.1:${port}${path}`);
  return new Promise((res, rej) => {
    const p = spawn('wrk', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    p.stderr.on('data', (c: Buffer) => {
      out += c.toString();
    });
    p.on('error', rej);
    p.on('close', (code) => {
      const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? Number.NaN);
      const ms = (re: RegExp) => {
        const m = re.exec(out);
        if (!m) return Number.NaN;
        const f = { us: 0.001, ms: 1, s: 1000 }[m[2] as 'us' | 'ms' | 's'] ?? 1;
        return Math.round(Number(m[1]) * f * 100) / 100;
      };
      const requests = num(/(\d+) requests in/);
      if (code !== 0 || Number.isNaN(requests)) return rej(new Error(`wrk failed (${code}): ${out}`));
      const non2xx = num(/Non-2xx or 3xx responses: (\d+)/);
      const sockErr = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      res({
        target,
        requests,
        errors:
          (Number.isNaN(non2xx) ? 0 : non2xx) +
          (sockErr ? sockErr.slice(1).reduce((a, x) => a + Number(x), 0) : 0),
        rps: Math.round(num(/Requests\/sec:\s+([\d.]+)/)),
        p50_ms: ms(/\s50%\s+([\d.]+)(us|ms|s)/),
        p99_ms: ms(/\s99%\s+([\d.]+)(us|ms|s)/),
        max_ms: ms(/Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)/),
      });
    });
  });
}

function measure(
  target: string,
  port: number,
  path: string,
  headers: Record<string, string>,
  seconds: number,
  record: boolean,
): Promise<Result> {
  if (O.client === 'wrk') return loadWrk(target, port, path, headers, seconds);
  return O.client === 'raw'
    ? loadRaw(target, port, path, headers, seconds, record)
    : load(target, port, path, headers, seconds, record);
}

/** The path every target is asked for (a route prefix goes in front for the front door). */
const PATH = '/v2/bench/blob';

export interface HttpProxyBenchReport {
  date: string;
  machine: { cpus: number; model: string | undefined; node: string; load_average: number[] };
  settings: Record<string, unknown>;
  results: Result[];
  /** The basic-token route (cached answers), as before the auth-none route was added. */
  ratio_rps_frontdoor_vs_nginx: number | null;
  /** Median over the rounds of each round's own ratio (the same minute for both). */
  ratio_rps_frontdoor_none_vs_nginx: number | null;
  ratio_rps_frontdoor_token_vs_nginx: number | null;
  ratio_p99_frontdoor_vs_nginx: number | null;
  ratio_rps_frontdoor_vs_node_bare: number | null;
  /** The floor: node:http with undici and nothing else, against nginx; the front door against it. */
  ratio_rps_node_undici_vs_nginx: number | null;
  ratio_rps_frontdoor_none_vs_node_undici: number | null;
  /** With --bin-a: this build's req/s over the other build's, median of the rounds' ratios. */
  speedup_none_vs_a?: number | null;
  speedup_token_vs_a?: number | null;
}

async function bench(): Promise<HttpProxyBenchReport> {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: build first (npx tsc -p tsconfig.build.json)`);
  const dir = mkdtempSync(join(tmpdir(), 'tether-bench-'));
  try {
    const BODY = bodyOf();
    const [upPort, nginxPort] = [await freePort(), await freePort()];

    // Upstream: nginx with a fixed body; it insists on the injected credential like the real registry.
    const auth = Buffer.from(`${UPSTREAM_USER}:${UPSTREAM_PASS}`).toString('base64');
    mkdirSync(join(dir, 'up'));
    writeFileSync(
      join(dir, 'up/nginx.conf'),
      nginxConf(
        join(dir, 'up'),
        upPort,
        `server { listen 127.0.0.1:PORT; location / { default_type ${O.body === 'json' ? 'application/json' : 'text/plain'};
    if ($http_authorization != "Basic ${auth}") { return 401; }
    return 200 '${BODY.trimEnd()}\n'; } }`,
      ),
    );
    const upstreamNginx = start('nginx', ['-p', join(dir, 'up'), '-c', join(dir, 'up/nginx.conf')]);
    await waitForPort(upPort);

    // nginx as a plain reverse proxy to the same upstream (keep-alive pool, as one would deploy it).
    mkdirSync(join(dir, 'proxy'));
    writeFileSync(
      join(dir, 'proxy/nginx.conf'),
      nginxConf(
        join(dir, 'proxy'),
        nginxPort,
        `upstream up { server 127.0.0.1:${upPort}; keepalive 64; }
  server { listen 127.0.0.1:PORT;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
                 proxy_set_header Authorization "Basic ${auth}"; proxy_buffering on; } }`,
      ),
    );
    const proxyNginx = start('nginx', ['-p', join(dir, 'proxy'), '-c', join(dir, 'proxy/nginx.conf')]);
    await waitForPort(nginxPort);

    // The Tether front door: the real gateway binary.
    const hashed = await new Promise<string>((res, rej) => {
      const p = spawn(process.execPath, [BIN, 'http-proxy', 'hash-token', EMAIL], {
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      let out = '';
      p.stdout.on('data', (c: Buffer) => {
        out += c.toString();
      });
      p.on('close', (code) =>
        code === 0 ? res(out.trim()) : rej(new Error(`hash-token exited with ${code}`)),
      );
      p.stdin.end(`${TOKEN}\n`);
    });
    writeFileSync(join(dir, 'tokens'), `${hashed}\n`);
    const prof = O.profile ? ['--cpu-prof', '--cpu-prof-dir', join(ROOT, 'bench/results')] : [];
    // One gateway per build: two routes to the same upstream, auth none and basic-token (cached).
    const startDoor = async (name: string, bin: string) => {
      const port = await freePort();
      const route = (prefix: string, auth: Record<string, unknown>) => ({
        path_prefix: prefix,
        strip_prefix: true,
        to: `http://127.0.0.1:${upPort}`,
        auth,
        read_only: true,
        docker_registry: true,
        upstream_auth: { type: 'basic', username: UPSTREAM_USER, password: UPSTREAM_PASS },
      });
      writeFileSync(
        join(dir, `${name}.yaml`),
        JSON.stringify({
          data_dir: join(dir, `data-${name}`),
          tunnel: { listen: '127.0.0.1:0' },
          admin: { listen: '127.0.0.1:0' },
          log: { level: 'warn' },
          workers: O.workers === 'auto' ? 'auto' : Number(O.workers),
          http_proxy: {
            listen: `127.0.0.1:${port}`,
            routes: [
              route('/none/', { type: 'none' }),
              route('/token/', {
                type: 'basic-token',
                verify: { type: 'static', file: join(dir, 'tokens') },
              }),
            ],
          },
        }),
      );
      const launch = binLaunch(['gateway', '-c', join(dir, `${name}.yaml`)], process.env, {
        bin,
        nodeFlags: prof,
      });
      const child = start(process.execPath, launch.args, launch.env);
      await waitForPort(port);
      return { port, child };
    };
    const doors: Array<[string, { port: number; child: ChildProcess }]> = [];
    if (O.binA) doors.push(['a-', await startDoor('a', resolve(O.binA))]);
    doors.push(['', await startDoor('b', BIN)]);

    // node-bare: the smallest node:http keep-alive proxy, the floor for any proxy built on node:http.
    const barePort = await freePort();
    writeFileSync(join(dir, 'bare.mjs'), BARE_PROXY);
    const bare = start(process.execPath, [join(dir, 'bare.mjs'), String(barePort), String(upPort), auth]);
    await waitForPort(barePort);
    const undiciPort = await freePort();
    writeFileSync(join(dir, 'undici.mjs'), UNDICI_PROXY(ROOT));
    const undici = start(process.execPath, [
      ...prof,
      join(dir, 'undici.mjs'),
      String(undiciPort),
      String(upPort),
      auth,
    ]);
    await waitForPort(undiciPort);
    const callerAuth = { authorization: `Basic ${Buffer.from(`${EMAIL}:${TOKEN}`).toString('base64')}` };
    // The processes whose CPU time each target costs (nginx: its workers; the gateway: itself),
    // and what each is asked: [name, port, path, headers].
    const serverPids: Record<string, () => number[]> = {
      direct: () => withChildren(upstreamNginx.pid!),
      nginx: () => withChildren(proxyNginx.pid!),
      'node-bare': () => [bare.pid!],
      'node-undici': () => [undici.pid!],
    };
    const targets: Array<[string, number, string, Record<string, string>]> = [
      ['direct', upPort, PATH, { authorization: `Basic ${auth}` }],
      ['nginx', nginxPort, PATH, {}],
    ];
    for (const [prefix, d] of doors) {
      // the gateway and its workers, when it has some
      serverPids[`${prefix}frontdoor-none`] = serverPids[`${prefix}frontdoor-token`] = () =>
        withChildren(d.child.pid!);
      targets.push([`${prefix}frontdoor-none`, d.port, `/none${PATH}`, {}]);
      targets.push([`${prefix}frontdoor-token`, d.port, `/token${PATH}`, callerAuth]);
    }
    targets.push(['node-bare', barePort, PATH, {}]);
    targets.push(['node-undici', undiciPort, PATH, {}]);
    // Sanity: every target answers 200 with the body.
    for (const [name, port, path, headers] of targets) {
      const r = await new Promise<{ status: number; body: string }>((res, rej) => {
        http
          .get({ host: '127.0.0.1', port, path, headers, agent: false }, (m) => {
            let body = '';
            m.on('data', (c: Buffer) => {
              body += c.toString();
            });
            m.on('end', () => res({ status: m.statusCode ?? 0, body }));
          })
          .on('error', rej);
      });
      if (r.status !== 200 || r.body !== BODY)
        throw new Error(`${name} does not answer 200 with the body (got ${r.status})`);
    }
    const best = new Map<string, Result>();
    const perRound: Array<Map<string, Result>> = [];
    for (let round = 0; round < O.rounds; round++) {
      const thisRound = new Map<string, Result>();
      perRound.push(thisRound);
      // Alternate the order round by round, so that the machine's drift hits every target alike.
      const order = round % 2 === 0 ? targets : [...targets].reverse();
      for (const [name, port, path, headers] of order) {
        if (O.only && !O.only.includes(name)) continue;
        await measure(name, port, path, headers, O.warmup, false);
        const pids = serverPids[name]!();
        const cpu0 = cpuSeconds(pids);
        const r = await measure(name, port, path, headers, O.duration, true);
        r.cpu_us_per_request = Math.round(((cpuSeconds(pids) - cpu0) * 1e6) / Math.max(1, r.requests));
        O.print(
          `round ${round + 1} ${name.padEnd(17)} ${String(r.rps).padStart(7)} req/s  p50 ${r.p50_ms.toFixed(2)} ms  p99 ${r.p99_ms.toFixed(2)} ms  ` +
            `server CPU ${r.cpu_us_per_request} µs/request  errors ${r.errors}`,
        );
        thisRound.set(name, r);
        const prev = best.get(name);
        if (!prev || r.rps > prev.rps) best.set(name, r);
      }
    }
    const nginx = best.get('nginx');
    const fd = best.get('frontdoor-token');
    const fdNone = best.get('frontdoor-none');
    const nb = best.get('node-bare');
    const nu = best.get('node-undici');
    const ratio = (x: number | undefined, y: number | undefined) =>
      x === undefined || y === undefined || y === 0 ? null : Math.round((x / y) * 100) / 100;
    /** The median of each round's own x/y (both measured minutes apart at most). */
    const roundRatio = (x: string, y: string) => {
      const v = perRound
        .map((m) => ratio(m.get(x)?.rps, m.get(y)?.rps))
        .filter((r): r is number => r !== null)
        .sort((a, b) => a - b);
      return v.length === 0 ? null : v[Math.floor((v.length - 1) / 2)]!;
    };
    const report: HttpProxyBenchReport = {
      date: new Date().toISOString(),
      machine: {
        cpus: cpus().length,
        model: cpus()[0]?.model,
        node: process.version,
        load_average: loadavg().map((x) => Math.round(x * 100) / 100),
      },
      settings: {
        duration_s: O.duration,
        warmup_s: O.warmup,
        connections: O.connections,
        client: O.client,
        rounds: O.rounds,
        nginx_workers: O.nginxWorkers,
        gateway_workers: O.workers,
        body: O.body,
        body_bytes: BODY.length,
        frontdoor_routes:
          'frontdoor-none: auth none; frontdoor-token: basic-token, static scrypt verifier (cached); both: injected basic upstream credential, docker_registry, read_only',
        best_of_rounds: 'results: highest req/s per target; ratios: median of the rounds',
        ...(O.binA ? { bin_a: O.binA } : {}),
      },
      results: [...best.values()],
      ratio_rps_frontdoor_vs_nginx: roundRatio('frontdoor-token', 'nginx'),
      ratio_rps_frontdoor_none_vs_nginx: roundRatio('frontdoor-none', 'nginx'),
      ratio_rps_frontdoor_token_vs_nginx: roundRatio('frontdoor-token', 'nginx'),
      ratio_p99_frontdoor_vs_nginx: ratio(fd?.p99_ms, nginx?.p99_ms),
      ratio_rps_frontdoor_vs_node_bare: ratio(fd?.rps, nb?.rps),
      ratio_rps_node_undici_vs_nginx: roundRatio('node-undici', 'nginx'),
      ratio_rps_frontdoor_none_vs_node_undici: roundRatio('frontdoor-none', 'node-undici'),
      ...(O.binA
        ? {
            speedup_none_vs_a: roundRatio('frontdoor-none', 'a-frontdoor-none'),
            speedup_token_vs_a: roundRatio('frontdoor-token', 'a-frontdoor-token'),
          }
        : {}),
    };
    if (nginx && fd) {
      O.print(
        `best of ${O.rounds}: direct ${best.get('direct')?.rps} req/s, nginx ${nginx.rps} req/s (p99 ${nginx.p99_ms} ms), ` +
          `front door auth none ${fdNone?.rps} req/s, cached token ${fd.rps} req/s (p99 ${fd.p99_ms} ms), node-bare ${nb?.rps} req/s (p99 ${nb?.p99_ms} ms), node-undici ${nu?.rps} req/s`,
      );
      O.print(
        `front door / nginx (median of the rounds): auth none ${report.ratio_rps_frontdoor_none_vs_nginx}x, cached token ${report.ratio_rps_frontdoor_token_vs_nginx}x throughput; ` +
          `${report.ratio_p99_frontdoor_vs_nginx}x p99 latency (token); front door / node-bare: ${report.ratio_rps_frontdoor_vs_node_bare}x throughput; ` +
          `node-undici / nginx ${report.ratio_rps_node_undici_vs_nginx}x, front door auth none / node-undici ${report.ratio_rps_frontdoor_none_vs_node_undici}x` +
          (O.binA
            ? `; this build / --bin-a: auth none ${report.speedup_none_vs_a}x, token ${report.speedup_token_vs_a}x`
            : ''),
      );
    }
    mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
    writeFileSync(join(ROOT, 'bench/results/http-proxy.json'), `${JSON.stringify(report, null, 2)}\n`);
    return report;
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** For `npm run bench` (bench/run.ts): the same measurement, shorter with `quick`. */
export async function run(o: { quick: boolean }): Promise<HttpProxyBenchReport> {
  O = o.quick
    ? { ...DEFAULTS, duration: 1.5, warmup: 0.5, rounds: 1 }
    : { ...DEFAULTS, duration: 5, warmup: 1, rounds: 2 };
  try {
    return await bench();
  } finally {
    stopping = false;
    children.length = 0;
  }
}

// Run directly: npx tsx bench/http-proxy.ts [options]
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values: a } = parseArgs({
    options: {
      duration: { type: 'string', default: String(DEFAULTS.duration) },
      warmup: { type: 'string', default: String(DEFAULTS.warmup) },
      connections: { type: 'string', default: String(DEFAULTS.connections) },
      'nginx-workers': { type: 'string', default: DEFAULTS.nginxWorkers },
      workers: { type: 'string', default: DEFAULTS.workers },
      rounds: { type: 'string', default: String(DEFAULTS.rounds) },
      client: { type: 'string', default: DEFAULTS.client },
      body: { type: 'string', default: DEFAULTS.body },
      'bin-a': { type: 'string' },
      profile: { type: 'boolean', default: false },
      only: { type: 'string' },
    },
  });
  O = {
    ...DEFAULTS,
    duration: Number(a.duration),
    warmup: Number(a.warmup),
    connections: Number(a.connections),
    nginxWorkers: a['nginx-workers']!,
    workers: a.workers!,
    rounds: Number(a.rounds),
    client: a.client === 'agent' ? 'agent' : a.client === 'wrk' ? 'wrk' : 'raw',
    body: a.body === '1k' ? '1k' : 'json',
    ...(a['bin-a'] ? { binA: a['bin-a'] } : {}),
    profile: a.profile === true,
    only: a.only?.split(','),
  };
  bench().catch(async (e: unknown) => {
    process.stderr.write(`bench failed: ${(e as Error).stack ?? String(e)}\n`);
    await stopAll();
    process.exit(1);
  });
}
