/**
 * Process plumbing for the benchmark: spawning and stopping children, ports, temp dirs, and
 * reading a process's memory and CPU time from /proc.
 */
import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync } from 'node:fs';
import net from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');
export const BIN = join(ROOT, 'dist/bin/tether.js');
export const LIB = import.meta.dirname;

const children = new Set<ChildProcess>();
const dirs: string[] = [];

export function tempDir(prefix = 'tether-bench-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

export function removeTempDirs(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

export interface Child {
  process: ChildProcess;
  pid: number;
  /** Everything the child wrote to stdout (when piped) and stderr. */
  output(): string;
  /** Resolves with the first output line matching `re`. */
  wait(re: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts a child. `cpus` pins it with taskset (e.g. "0" or "0,1"). stdout goes to the returned
 * watcher unless `stdout: 'ignore'` (the gateway's log is not read during measurements).
 */
export function start(
  cmd: string,
  args: string[],
  opts: { cpus?: string; env?: NodeJS.ProcessEnv; stdout?: 'pipe' | 'ignore' | number; cwd?: string } = {},
): Child {
  const full = opts.cpus ? ['taskset', ['-c', opts.cpus, cmd, ...args]] : [cmd, args];
  const so: SpawnOptions = {
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    stdio: ['pipe', opts.stdout ?? 'pipe', 'pipe'],
  };
  const p = spawn(full[0] as string, full[1] as string[], so);
  children.add(p);
  p.once('exit', () => children.delete(p));
  p.stdin?.on('error', () => {});
  let text = '';
  let lineBuf = '';
  const waiters: Array<{ re: RegExp; resolve: (m: RegExpExecArray) => void }> = [];
  const onData = (c: Buffer) => {
    const s = c.toString();
    if (text.length < 1_000_000) text += s;
    lineBuf += s;
    let i = lineBuf.indexOf('\n');
    while (i >= 0) {
      const line = lineBuf.slice(0, i);
      lineBuf = lineBuf.slice(i + 1);
      for (const w of [...waiters]) {
        const m = w.re.exec(line);
        if (m) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(m);
        }
      }
      i = lineBuf.indexOf('\n');
    }
  };
  p.stdout?.on('data', onData);
  p.stderr?.on('data', onData);
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  return {
    process: p,
    pid: p.pid ?? 0,
    output: () => text,
    wait: (re, timeoutMs = 20_000) =>
      new Promise((resolveWait, reject) => {
        const timer = setTimeout(() => {
          reject(new Error(`${cmd} ${args.join(' ')}: no line like ${re} within ${timeoutMs} ms:\n${text}`));
        }, timeoutMs);
        const w = {
          re,
          resolve: (m: RegExpExecArray) => {
            clearTimeout(timer);
            resolveWait(m);
          },
        };
        waiters.push(w);
        void exited.then(() => {
          if (waiters.includes(w)) {
            clearTimeout(timer);
            reject(new Error(`${cmd} exited (${p.exitCode ?? p.signalCode}):\n${text}`));
          }
        });
      }),
    stop: async (graceMs = 3_000) => {
      if (p.exitCode !== null || p.signalCode !== null) return;
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Stops every child still running (at the end, or after a failure). */
export async function stopAll(): Promise<void> {
  await Promise.all(
    [...children].map(
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

/** Runs a command to completion and returns its stdout (throws on a non-zero exit). */
export function runOut(cmd: string, args: string[], input?: string, timeoutMs = 60_000): Promise<string> {
  return new Promise((res, rej) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    p.stderr.on('data', (c: Buffer) => {
      err += c.toString();
    });
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', rej);
    p.on('close', (code) => {
      clearTimeout(t);
      if (code === 0) res(out);
      else rej(new Error(`${cmd} ${args.join(' ')} exited with ${code}: ${err}${out}`));
    });
    p.stdin.on('error', () => {});
    p.stdin.end(input ?? '');
  });
}

// Free ports, lease ranges and the binary's node flags: the same helpers the tests use.
export { binLaunch, freePort, freePortRange } from '../../test/helpers/util.js';

export async function waitPort(port: number, host = '127.0.0.1', timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect({ port, host });
      s.once('connect', () => {
        s.destroy();
        r(true);
      });
      s.once('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port}`);
    await sleep(50);
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Resident set size of a process, bytes (0 when it is gone). */
export function rss(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * The physical memory a group of processes holds together, bytes: every resident page counted
 * once, however many of the processes map it. Summed RSS counts a page once per process that
 * maps it, so the node binary's code (about 45 MiB touched by each gateway process, shared
 * through the page cache) counts again for every worker although the kernel holds it once.
 * Read from /proc/<pid>/pagemap, whose page frame numbers only root may see; without them
 * (`how: 'pss'`) it is the summed proportional set size, which splits each shared page among
 * every process on the host that maps it and so reads a little low.
 */
export function memoryOf(pids: number[]): { rss: number; resident: number; how: 'pages' | 'pss' } {
  const rssSum = pids.reduce((a, p) => a + rss(p), 0);
  const frames = new Set<number>();
  let hidden = false;
  const buf = Buffer.alloc(8 * 4096);
  for (const pid of pids) {
    let fd: number;
    let maps: string[];
    try {
      maps = readFileSync(`/proc/${pid}/maps`, 'utf8').trim().split('\n');
      fd = openSync(`/proc/${pid}/pagemap`, 'r');
    } catch {
      continue; // gone
    }
    try {
      for (const line of maps) {
        if (line.endsWith('[vsyscall]')) continue;
        const [lo, hi] = line
          .split(' ', 1)[0]!
          .split('-')
          .map((h) => Number.parseInt(h, 16) / 4096);
        for (let page = lo!; page < hi!; ) {
          const n = Math.min(hi! - page, 4096);
          const got = readSync(fd, buf, 0, n * 8, page * 8) / 8;
          for (let i = 0; i < got; i++) {
            const e = buf.readBigUInt64LE(i * 8);
            if (!(e >> 63n)) continue; // not resident
            const pfn = Number(e & 0x7fffffffffffffn);
            if (pfn === 0) hidden = true;
            else frames.add(pfn);
          }
          page += n;
        }
      }
    } finally {
      closeSync(fd);
    }
  }
  if (!hidden) return { rss: rssSum, resident: frames.size * 4096, how: 'pages' };
  let pss = 0;
  for (const pid of pids) {
    try {
      const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
      pss += m ? Number(m[1]) * 1024 : 0;
    } catch {
      // gone
    }
  }
  return { rss: rssSum, resident: pss, how: 'pss' };
}

/** User and system CPU seconds a process has used so far (zeros when it is gone). */
export function cpuTimes(pid: number): { user: number; sys: number } {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return { user: Number(rest[11]) / 100, sys: Number(rest[12]) / 100 };
  } catch {
    return { user: 0, sys: 0 };
  }
}

/** User + system CPU seconds a process has used so far. */
export function cpuSeconds(pid: number): number {
  const t = cpuTimes(pid);
  return t.user + t.sys;
}

/** Descendants of a pid (e.g. the node under a taskset wrapper: taskset execs, so usually itself). */
export function load(): [number, number, number] {
  return loadavg() as [number, number, number];
}

export function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export const round = (x: number, digits = 2) => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};

/** A pid and all its descendants (sshd forks a child per session; its CPU time counts too). */
export function withDescendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const f = readFileSync(`/proc/${e}/stat`, 'utf8');
      parent.set(Number(e), Number(f.slice(f.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone
    }
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) for (const [c, p] of parent) if (p === out[i]) out.push(c);
  return out;
}

export function cpuOf(pids: number[]): number {
  const t = cpuSplitOf(pids);
  return t.user + t.sys;
}

/** User and system CPU seconds of several processes together. */
export function cpuSplitOf(pids: number[]): { user: number; sys: number } {
  const s = { user: 0, sys: 0 };
  for (const p of pids) {
    const t = cpuTimes(p);
    s.user += t.user;
    s.sys += t.sys;
  }
  return s;
}

/** Runs a bench/lib/loadgen.mjs mode in its own process; resolves with its JSON result. */
export async function loadgen<T>(args: (string | number)[], cpus?: string): Promise<T> {
  const c = start(process.execPath, [join(LIB, 'loadgen.mjs'), ...args.map(String)], { cpus });
  const m = await c.wait(/^\{.*\}$/, 600_000);
  await c.stop();
  return JSON.parse(m[0]) as T;
}

/** What the load generator's connection loop (`connrate`) reports. */
export interface ConnRateRun {
  connections: number;
  errors: number;
  per_s: number;
  p50_ms: number;
  p99_ms: number;
}

/**
 * Callers opening new connections (connect, a 1-byte echo, close) to `targets` (host:port, spread
 * over all of them) for `seconds`, `concurrency` at once; with the CPU the processes `pids` used
 * per connection meanwhile (ms).
 */
export async function connRate(
  targets: string[],
  seconds: number,
  concurrency: number,
  pids: number[],
  cpus?: string,
): Promise<ConnRateRun & { cpuMsPerConn: number }> {
  const c0 = cpuOf(pids);
  const r = await loadgen<ConnRateRun>(['connrate', targets.join(','), seconds, concurrency], cpus);
  return { ...r, cpuMsPerConn: ((cpuOf(pids) - c0) * 1000) / Math.max(1, r.connections) };
}
