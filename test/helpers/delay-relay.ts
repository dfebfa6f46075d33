/**
 * A user-space WAN link for tests and the `wan` bench section: a TCP relay that gives each
 * direction a one-way delay and a rate limit (this kernel has no netem).
 *
 * Each direction is modelled as a link: a byte read from one side waits in a bounded queue to be
 * serialized at `rate` (the bottleneck), then travels `delay` ms before it is written to the
 * other side. When the queue is full the relay stops reading that side, so the sender's TCP
 * backs off as it would behind a full router queue; when the receiving side does not read, the
 * link stops delivering and the queue fills. Memory is bounded by queue + rate × delay per
 * direction.
 *
 * Run in its own process (so its timers are not delayed by the work they measure):
 *   node --import tsx test/helpers/delay-relay.ts --to 127.0.0.1:2222 --delay 25 --rate 1000
 *     (delay in ms one way, rate in Mbit/s per direction) → prints {"port":N} when listening.
 * or from a test: `await startDelayRelay({ to, delayMs, rateMbit })`.
 */
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { spawnTracked } from './util.js';

export interface LinkOptions {
  /** One-way delay, ms. */
  delayMs: number;
  /** Rate of each direction, Mbit/s (0 = unlimited). */
  rateMbit: number;
  /** Bytes that may wait for the bottleneck before the relay stops reading (default 1 MiB). */
  queueBytes?: number;
}

interface Chunk {
  data: Buffer;
  /** performance.now() at which it arrives at the far end. */
  at: number;
}

/** One direction of the link: from `src` to `dst`. */
function pipeLink(src: net.Socket, dst: net.Socket, o: LinkOptions): void {
  const bytesPerMs = o.rateMbit > 0 ? (o.rateMbit * 1e6) / 8 / 1000 : Number.POSITIVE_INFINITY;
  const queueLimit = o.queueBytes ?? 1024 * 1024;
  const chunks: Chunk[] = [];
  let head = 0;
  /** When the bottleneck finishes serializing what it has been given. */
  let busyUntil = 0;
  let timer: NodeJS.Timeout | undefined;
  let paused = false;
  let ended = false;
  let blocked = false;

  /** Bytes not yet serialized (waiting in the queue). */
  const backlog = (now: number) =>
    Number.isFinite(bytesPerMs) ? Math.max(0, busyUntil - now) * bytesPerMs : 0;

  const schedule = () => {
    if (timer || blocked) return;
    const now = performance.now();
    let next = Number.POSITIVE_INFINITY;
    if (head < chunks.length) next = chunks[head]!.at;
    if (paused) next = Math.min(next, busyUntil - queueLimit / bytesPerMs);
    if (next === Number.POSITIVE_INFINITY) return;
    timer = setTimeout(flush, Math.max(0, next - now));
  };

  const flush = () => {
    timer = undefined;
    const now = performance.now();
    while (head < chunks.length && chunks[head]!.at <= now + 0.25 && !blocked) {
      const c = chunks[head]!;
      chunks[head++] = undefined as unknown as Chunk;
      if (!dst.write(c.data)) {
        blocked = true;
        dst.once('drain', () => {
          blocked = false;
          flush();
        });
      }
    }
    if (head > 1024 && head * 2 > chunks.length) {
      chunks.splice(0, head);
      head = 0;
    }
    if (paused && backlog(now) < queueLimit && !blocked) {
      paused = false;
      src.resume();
    }
    if (ended && head >= chunks.length) dst.end();
    else schedule();
  };

  src.on('data', (data: Buffer) => {
    const now = performance.now();
    busyUntil = Math.max(now, busyUntil) + data.length / bytesPerMs;
    chunks.push({ data, at: busyUntil + o.delayMs });
    if (backlog(now) >= queueLimit || blocked) {
      paused = true;
      src.pause();
    }
    schedule();
  });
  src.on('end', () => {
    ended = true;
    if (head >= chunks.length) dst.end();
  });
  const stop = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
  };
  src.on('close', () => {
    if (!ended) {
      stop();
      dst.destroy();
    }
  });
  dst.on('close', () => {
    stop();
    src.destroy();
  });
  src.on('error', () => {});
  dst.on('error', () => {});
}

/** Listens on `listenHost:0` and relays each connection to `to` through a link. */
export function listenRelay(
  to: { host: string; port: number },
  o: LinkOptions,
  listenHost = '127.0.0.1',
): Promise<net.Server> {
  const srv = net.createServer({ noDelay: true, pauseOnConnect: true }, (a) => {
    const b = net.connect({ host: to.host, port: to.port, noDelay: true });
    a.setNoDelay(true);
    b.on('connect', () => {
      pipeLink(a, b, o);
      pipeLink(b, a, o);
      a.resume();
    });
    b.on('error', () => a.destroy());
    a.on('error', () => b.destroy());
  });
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen({ host: listenHost, port: 0 }, () => resolve(srv));
  });
}

export interface DelayRelay {
  port: number;
  pid: number;
  stop(): Promise<void>;
}

const SELF = fileURLToPath(import.meta.url);

/** Starts the relay in its own process; resolves when it listens. */
export async function startDelayRelay(
  opts: LinkOptions & { to: { host: string; port: number } },
): Promise<DelayRelay> {
  const args = [
    '--import',
    'tsx',
    SELF,
    '--to',
    `${opts.to.host}:${opts.to.port}`,
    '--delay',
    String(opts.delayMs),
    '--rate',
    String(opts.rateMbit),
    ...(opts.queueBytes ? ['--queue', String(opts.queueBytes)] : []),
  ];
  const child = spawnTracked(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /\{"port":(\d+)\}/.exec(out);
      if (m) {
        child.stdout.off('data', onData);
        resolve(Number(m[1]));
      }
    };
    child.stdout.on('data', onData);
    child.once('exit', (code) => reject(new Error(`delay relay exited (${code}) before listening: ${out}`)));
  });
  return {
    port,
    pid: child.pid!,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

if (process.argv[1] === SELF) {
  const to = arg('--to') ?? '';
  const m = /^(.+):(\d+)$/.exec(to);
  if (!m) {
    console.error('usage: delay-relay.ts --to host:port --delay MS --rate MBIT [--queue BYTES]');
    process.exit(2);
  }
  const srv = await listenRelay(
    { host: m[1]!, port: Number(m[2]) },
    {
      delayMs: Number(arg('--delay') ?? 0),
      rateMbit: Number(arg('--rate') ?? 0),
      queueBytes: arg('--queue') ? Number(arg('--queue')) : undefined,
    },
    arg('--listen-host') ?? '127.0.0.1',
  );
  process.stdout.write(`${JSON.stringify({ port: (srv.address() as net.AddressInfo).port })}\n`);
  process.on('SIGTERM', () => process.exit(0));
}
