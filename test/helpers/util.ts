import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type Shebang, shebangOf } from '../../src/bin/node-flags.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const BIN = join(ROOT, 'dist/bin/tether.js');

const shebangOfBin = new Map<string, Shebang>();
/** A `tether` build's shebang line (the environment and flags it starts node with), read once per file. */
function binShebang(bin: string): Shebang {
  let s = shebangOfBin.get(bin);
  if (!s) {
    s = shebangOf(bin);
    shebangOfBin.set(bin, s);
  }
  return s;
}

/**
 * How to start a `tether` build as its shebang line would: node's arguments (the shebang's flags,
 * `nodeFlags`, the file, `args`) and the environment (`env` with the shebang's variables), for
 * `spawn(process.execPath, launch.args, { env: launch.env })`.
 */
export function binLaunch(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  opts: { bin?: string; nodeFlags?: readonly string[] } = {},
): { args: string[]; env: NodeJS.ProcessEnv } {
  const bin = opts.bin ?? BIN;
  const shebang = binShebang(bin);
  return {
    args: [...shebang.flags, ...(opts.nodeFlags ?? []), bin, ...args],
    env: { ...env, ...shebang.env },
  };
}

/**
 * The next `name` event of `emitter` (its arguments), or a rejection: on its 'error' event
 * meanwhile, or after `ms` with a message naming the event. A test awaiting a socket's 'connect'
 * or 'data' fails here instead of hanging until the runner's timeout.
 */
export async function nextEvent(emitter: NodeJS.EventEmitter, name: string, ms = 15_000): Promise<unknown[]> {
  try {
    return await once(emitter, name, { signal: AbortSignal.timeout(ms) });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw new Error(`no '${name}' event within ${ms} ms`);
    throw e;
  }
}

/** A temp dir removed at process exit. */
export function tempDir(prefix = 'tether-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Polls `cond` until it returns a truthy value or the deadline passes. */
export async function waitFor<T>(
  cond: () => T | Promise<T>,
  opts: { timeout?: number; interval?: number; what?: string } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + (opts.timeout ?? 10_000);
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out waiting for ${opts.what ?? 'condition'}${lastErr ? `: ${String(lastErr)}` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, opts.interval ?? 50));
  }
}

/** Reads a socket's first chunk and puts it back, paused, as the gateway's first-bytes sniffs do. */
export async function sniff(socket: net.Socket): Promise<void> {
  socket.resume();
  const [first] = (await once(socket, 'data')) as [Buffer];
  socket.pause();
  socket.unshift(first);
}

/** Whether something accepts TCP connections on 127.0.0.1:port now. */
export function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** A free TCP port chosen by the OS. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen({ host, port: 0 }, () => r()));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/**
 * `n` distinct free TCP ports: each is held until all are chosen (calling freePort n times can
 * return the same port twice, since a closed port goes back to the OS at once).
 */
export async function freePorts(n: number, host = '127.0.0.1'): Promise<number[]> {
  const held: net.Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const srv = net.createServer();
      await new Promise<void>((r) => srv.listen({ host, port: 0 }, () => r()));
      held.push(srv);
    }
    return held.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(held.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}

async function portFree(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** Lease ranges are claimed in blocks of this many ports, between 10,000 and 30,000. */
const RANGE_BLOCK = 100;
const RANGE_BLOCKS = 200;
/** Where the test processes on this machine claim lease ranges (a directory per claimed block). */
const RANGE_CLAIMS = join(tmpdir(), 'tether-test-port-ranges');
/** A claim without its claimer's pid this long after it was made is left over from a killed run. */
const STALE_CLAIM_MS = 60_000;

/** Whether the claim in `dir` is held: its process lives, or it is being made right now. */
function claimHeld(dir: string): boolean {
  let owner = 0;
  try {
    owner = Number(readFileSync(join(dir, 'pid'), 'utf8'));
  } catch {
    // no pid (yet)
  }
  if (!(owner > 0)) {
    // being claimed right now, unless its claimer died before it wrote its pid, long ago
    const made = statSync(dir, { throwIfNoEntry: false })?.mtimeMs;
    return made !== undefined && Date.now() - made < STALE_CLAIM_MS;
  }
  try {
    process.kill(owner, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // alive, another user's
  }
}

/**
 * Claims block `b` for this process: an atomic mkdir, so two processes running at once never get
 * the same block. A claim whose process is gone (killed, no exit hook) is taken over. Returns the
 * release, or undefined when another process holds the block.
 */
function claimBlock(b: number): (() => void) | undefined {
  const dir = join(RANGE_CLAIMS, String(b));
  try {
    mkdirSync(dir);
  } catch {
    if (claimHeld(dir) || !takeOver(dir)) return undefined;
    return claimBlock(b);
  }
  writeFileSync(join(dir, 'pid'), String(process.pid));
  if (!exitHooked) {
    exitHooked = true;
    process.once('exit', releaseAll);
  }
  claimed.add(dir);
  return () => {
    claimed.delete(dir);
    rmSync(dir, { recursive: true, force: true });
  };
}

/**
 * Removes the stale claim `dir` so that it can be claimed again, under a lock of its own
 * (`<dir>.takeover`, an atomic mkdir). Without it, two processes that both found the claim stale
 * each removed it, and the second removed the claim the first had just made: both then held the
 * block. Under the lock the claim is checked again. Returns false when another process is taking
 * it over (a lock left by a process killed inside this function is removed after a minute).
 */
function takeOver(dir: string): boolean {
  const lock = `${dir}.takeover`;
  try {
    mkdirSync(lock);
  } catch {
    const made = statSync(lock, { throwIfNoEntry: false })?.mtimeMs;
    if (made !== undefined && Date.now() - made > STALE_CLAIM_MS)
      rmSync(lock, { recursive: true, force: true });
    return false;
  }
  try {
    if (!claimHeld(dir)) rmSync(dir, { recursive: true, force: true });
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
  return true;
}

/** The blocks this process holds; released when it exits. */
const claimed = new Set<string>();
let exitHooked = false;
function releaseAll(): void {
  for (const dir of claimed) rmSync(dir, { recursive: true, force: true });
  claimed.clear();
}

/**
 * A block of `size` consecutive free ports for a lease range. Lease ranges are configured, not
 * chosen by the OS, so tests pick a range below the ephemeral range, claim it against the other
 * test files (and benches) running on this machine (two gateways with overlapping ranges refused
 * each other's forwards: "port … is in use by another program"), and check it is free. The claim
 * lasts until `release()` or the process's exit.
 */
export async function freePortRange(
  size: number,
  host = '127.0.0.1',
): Promise<{ low: number; high: number; release(): void }> {
  const blocks = Math.ceil(size / RANGE_BLOCK);
  if (blocks > RANGE_BLOCKS) throw new Error(`a lease range of at most ${RANGE_BLOCK * RANGE_BLOCKS} ports`);
  mkdirSync(RANGE_CLAIMS, { recursive: true });
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = Math.floor(Math.random() * (RANGE_BLOCKS - blocks + 1));
    const held: Array<() => void> = [];
    for (let b = first; b < first + blocks; b++) {
      const release = claimBlock(b);
      if (!release) break;
      held.push(release);
    }
    const low = 10_000 + first * RANGE_BLOCK;
    let ok = held.length === blocks;
    for (let p = low; p < low + size && ok; p++) ok = await portFree(p, host);
    const release = () => {
      for (const r of held.splice(0)) r();
    };
    if (ok) return { low, high: low + size - 1, release };
    release();
  }
  throw new Error('no free port range found');
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();

/**
 * `spawn`, and the child is killed when this test file is killed: the runner's per-file timeout
 * ends the file's process with SIGTERM, which runs no `after` hook, and a gateway or sshd it
 * started would live on and hold its ports.
 */
export const spawnTracked = ((...args: unknown[]) => {
  const p = (spawn as (...a: unknown[]) => ChildProcess)(...args);
  if (children.size === 0 && !abortHooked) hookAbort();
  children.add(p);
  p.once('exit', () => children.delete(p));
  return p;
}) as typeof spawn;

let abortHooked = false;
function hookAbort(): void {
  abortHooked = true;
  for (const [signal, code] of [
    ['SIGTERM', 143],
    ['SIGINT', 130],
  ] as const) {
    process.once(signal, () => {
      for (const c of children) {
        try {
          if (c.pid) process.kill(-c.pid, 'SIGKILL'); // a detached child leads its own group
        } catch {}
        c.kill('SIGKILL');
      }
      process.exit(code);
    });
  }
}

/**
 * Starts a server program (haproxy, nginx, …) and resolves once every one of `ports` on 127.0.0.1
 * accepts a connection; rejects with its stderr when it exits first.
 */
export async function startServerProcess(
  cmd: string,
  args: string[],
  ports: number[],
): Promise<{ process: ChildProcess; stderr: OutputWatcher }> {
  const p = spawnTracked(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr = new OutputWatcher(p.stderr!);
  for (const port of ports) {
    await waitFor(
      async () => {
        if (p.exitCode !== null) throw new Error(`${cmd} exited: ${stderr.text()}`);
        return listening(port);
      },
      { what: `${cmd} listening on ${port}`, timeout: 30_000 },
    );
  }
  return { process: p, stderr };
}

/** Runs a command to completion. */
export function run(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string; timeout?: number; cwd?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const p = spawnTracked(cmd, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    p.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    // A guard against a hung command, not a deadline: a loaded machine can take many seconds.
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeout ?? 60_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    p.stdin.on('error', () => {});
    p.stdin.end(opts.input ?? '');
  });
}

/** Stops a child process: SIGTERM, then SIGKILL after `graceMs`. Resolves when it has exited. */
export async function stopProcess(p: ChildProcess, graceMs = 5_000): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  p.kill('SIGTERM');
  const t = setTimeout(() => p.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
}

/** Collects a child's output lines and lets a test wait for one that matches. */
export class OutputWatcher {
  lines: string[] = [];
  private buf = '';
  private waiters: Array<{ re: RegExp; resolve: (m: RegExpExecArray) => void }> = [];

  constructor(stream: NodeJS.ReadableStream) {
    stream.on('data', (c: Buffer) => {
      this.buf += c.toString();
      let i = this.buf.indexOf('\n');
      while (i >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        this.lines.push(line);
        for (const w of [...this.waiters]) {
          const m = w.re.exec(line);
          if (m) {
            this.waiters.splice(this.waiters.indexOf(w), 1);
            w.resolve(m);
          }
        }
        i = this.buf.indexOf('\n');
      }
    });
  }

  /** Waits for a line matching `re` (lines seen since `from` count too). */
  wait(re: RegExp, timeout = 10_000, from = 0): Promise<RegExpExecArray> {
    for (const line of this.lines.slice(from)) {
      const m = re.exec(line);
      if (m) return Promise.resolve(m);
    }
    return new Promise((resolve, reject) => {
      const w = {
        re,
        resolve: (m: RegExpExecArray) => {
          clearTimeout(t);
          resolve(m);
        },
      };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(
          new Error(`timed out waiting for output ${re}; last lines:\n${this.lines.slice(-10).join('\n')}`),
        );
      }, timeout);
      this.waiters.push(w);
    });
  }

  text(): string {
    return this.lines.join('\n');
  }
}
