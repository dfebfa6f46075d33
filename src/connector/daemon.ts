/**
 * Background operation: `start` spawns `tether connector run` detached, with its log in the
 * state dir, and waits until its control socket answers; `stop` asks it to stop over the
 * socket (SIGTERM by pid file as the fallback) and waits until the process is gone.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TetherError } from '../errors/index.js';
import { controlRequest, isRunning } from './control-socket.js';
import type { ConnectorStatus } from './status.js';

export const PID_FILE = 'connector.pid';
export const LOG_FILE = 'connector.log';

export function pidFile(stateDir: string): string {
  return join(stateDir, PID_FILE);
}

export function logFile(stateDir: string): string {
  return join(stateDir, LOG_FILE);
}

export function writePidFile(stateDir: string): void {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  writeFileSync(pidFile(stateDir), `${process.pid}\n`, { mode: 0o644 });
}

/** Removes the pid file if it is ours. */
export function removePidFile(stateDir: string, pid = process.pid): void {
  if (readPid(stateDir) !== pid) return;
  try {
    unlinkSync(pidFile(stateDir));
  } catch {
    // already gone
  }
}

export function readPid(stateDir: string): number | undefined {
  try {
    const n = Number(readFileSync(pidFile(stateDir), 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  // An exited process waiting for its parent (or a slow init) to reap it is not running.
  if (process.platform === 'linux') {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
    } catch {
      return false;
    }
  }
  return true;
}

/** A stale pid file may name a pid reused by something else: check before signalling it. */
function looksLikeConnector(pid: number): boolean {
  if (process.platform !== 'linux') return true;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('connector');
  } catch {
    return false;
  }
}

function logTail(stateDir: string, from: number): string {
  try {
    const text = readFileSync(logFile(stateDir), 'utf8').slice(from);
    const lines = text.trim().split('\n').slice(-10);
    return lines
      .map((l) => {
        try {
          const o = JSON.parse(l) as { msg?: string };
          return o.msg ?? l;
        } catch {
          return l;
        }
      })
      .join('\n');
  } catch {
    return '';
  }
}

export interface StartOptions {
  configFile: string;
  stateDir: string;
  /** How to run `tether`: [node, ...execArgv, script]. */
  command: string[];
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

/** Starts `tether connector run` in the background; resolves with its first status. */
export async function startDaemon(opts: StartOptions): Promise<ConnectorStatus> {
  if (await isRunning(opts.stateDir)) {
    const pid = readPid(opts.stateDir);
    throw new TetherError(
      'CONNECTOR_ALREADY_RUNNING',
      `the connector is already running${pid ? ` (pid ${pid})` : ''}; "tether connector stop" stops it`,
      { status: 409 },
    );
  }
  mkdirSync(opts.stateDir, { recursive: true, mode: 0o700 });
  const log = logFile(opts.stateDir);
  let logStart = 0;
  try {
    logStart = statSync(log).size;
  } catch {
    // new log
  }
  const fd = openSync(log, 'a', 0o600);
  const [cmd, ...args] = opts.command;
  const child = spawn(cmd!, [...args, 'connector', 'run', '-c', opts.configFile], {
    detached: true,
    stdio: ['ignore', fd, fd],
    env: { ...(opts.env ?? process.env), TETHER_CONNECTOR_DAEMON: '1' },
  });
  closeSync(fd);
  let exited: number | null | undefined;
  child.on('exit', (code) => {
    exited = code;
  });
  child.unref();
  const deadline = Date.now() + (opts.timeoutMs ?? 15_000);
  while (Date.now() < deadline) {
    if (exited !== undefined) {
      throw new TetherError(
        'CONNECTOR_START_FAILED',
        `the connector exited at once (code ${exited}); its log (${log}) says:\n${logTail(opts.stateDir, logStart)}`,
        { status: 500 },
      );
    }
    try {
      return (await controlRequest(opts.stateDir, 'status', 2000)) as ConnectorStatus;
    } catch {
      await sleep(100);
    }
  }
  throw new TetherError(
    'CONNECTOR_START_FAILED',
    `the connector (pid ${child.pid}) did not answer on its control socket within ${(opts.timeoutMs ?? 15_000) / 1000} s; see ${log}`,
    { status: 500 },
  );
}

/**
 * Stops the running connector; resolves with its pid, or undefined when none was running. It
 * waits `timeoutMs` beyond the connector's `drain_timeout` (which the connector reports).
 */
export async function stopDaemon(stateDir: string, timeoutMs = 15_000): Promise<number | undefined> {
  let pid: number | undefined;
  try {
    const st = (await controlRequest(stateDir, 'stop', 5000)) as { pid: number; drainMs?: number };
    pid = st.pid;
    if (typeof st.drainMs === 'number' && st.drainMs > 0) timeoutMs += st.drainMs;
  } catch (e) {
    if (!(e instanceof TetherError) || e.code !== 'CONNECTOR_NOT_RUNNING') throw e;
    pid = readPid(stateDir);
    if (pid === undefined || !processAlive(pid) || !looksLikeConnector(pid)) return undefined;
    process.kill(pid, 'SIGTERM');
  }
  const deadline = Date.now() + timeoutMs;
  while (processAlive(pid) && Date.now() < deadline) await sleep(50);
  if (processAlive(pid)) {
    throw new TetherError(
      'CONNECTOR_STOP_FAILED',
      `the connector (pid ${pid}) did not stop within ${timeoutMs / 1000} s`,
      {
        status: 500,
      },
    );
  }
  return pid;
}
