/**
 * The local control socket: a Unix socket in the state dir (mode 0600, the dir 0700) over
 * which `status`, `reload`, `ping` and `stop` talk to a running connector. One JSON line
 * per request and per answer.
 */
import { chmodSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { TetherError, toErrorCode } from '../errors/index.js';

export const SOCKET_NAME = 'connector.sock';
export type ControlCommand = 'status' | 'reload' | 'ping' | 'stop';

export type ControlReply =
  | { ok: true; result: unknown }
  | { ok: false; error: { code: string; message: string; status?: number } };

export type ControlHandler = (cmd: ControlCommand) => Promise<unknown>;

export function socketPath(stateDir: string): string {
  return join(stateDir, SOCKET_NAME);
}

export function notRunning(stateDir: string): TetherError {
  return new TetherError(
    'CONNECTOR_NOT_RUNNING',
    `the connector is not running (no answer on ${socketPath(stateDir)}; start it with "tether connector start" or "run")`,
    { status: 404 },
  );
}

/** Sends one command to the connector that owns `stateDir`. */
export function controlRequest(stateDir: string, cmd: ControlCommand, timeoutMs = 15_000): Promise<unknown> {
  const path = socketPath(stateDir);
  return new Promise((resolve, reject) => {
    if (!existsSync(path)) {
      reject(notRunning(stateDir));
      return;
    }
    const sock = connect(path);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(
        new TetherError(
          'CONNECTOR_TIMEOUT',
          `the connector did not answer "${cmd}" within ${timeoutMs / 1000} s`,
          { status: 503 },
        ),
      );
    }, timeoutMs);
    sock.on('connect', () => sock.write(`${JSON.stringify({ cmd })}\n`));
    sock.on('data', (c) => {
      buf += c.toString('utf8');
      const i = buf.indexOf('\n');
      if (i < 0) return;
      clearTimeout(timer);
      sock.end();
      let reply: ControlReply;
      try {
        reply = JSON.parse(buf.slice(0, i)) as ControlReply;
      } catch {
        reject(
          new TetherError('CONNECTOR_PROTOCOL', 'the connector sent an unreadable answer', { status: 500 }),
        );
        return;
      }
      if (reply.ok) resolve(reply.result);
      else
        reject(
          new TetherError(toErrorCode(reply.error.code, 'CONNECTOR_PROTOCOL'), reply.error.message, {
            status: reply.error.status ?? 500,
          }),
        );
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (e.code === 'ECONNREFUSED' || e.code === 'ENOENT') reject(notRunning(stateDir));
      else
        reject(
          new TetherError('CONNECTOR_UNREACHABLE', `cannot talk to the connector on ${path}: ${e.message}`, {
            status: 503,
          }),
        );
    });
  });
}

/** Is a connector answering on this state dir? */
export async function isRunning(stateDir: string): Promise<boolean> {
  try {
    await controlRequest(stateDir, 'status', 3000);
    return true;
  } catch {
    return false;
  }
}

/**
 * Listens on the state dir's socket. A stale socket (left by a crash) is replaced; a live
 * one means another connector uses this state dir: refused.
 */
export async function listenControl(stateDir: string, handler: ControlHandler): Promise<Server> {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const path = socketPath(stateDir);
  if (path.length > 100) {
    throw new TetherError(
      'STATE_DIR_TOO_LONG',
      `the control socket path ${path} is too long for a Unix socket: set state_dir to a shorter directory`,
      { status: 400 },
    );
  }
  if (existsSync(path)) {
    if (await isRunning(stateDir)) {
      throw new TetherError(
        'CONNECTOR_ALREADY_RUNNING',
        `another connector is already running with the state dir ${stateDir} (stop it with "tether connector stop")`,
        { status: 409 },
      );
    }
    unlinkSync(path);
  }
  const server = createServer((sock) => {
    let buf = '';
    sock.on('error', () => {});
    sock.on('data', (c) => {
      buf += c.toString('utf8');
      if (buf.length > 4096) {
        sock.destroy();
        return;
      }
      const i = buf.indexOf('\n');
      if (i < 0) return;
      const line = buf.slice(0, i);
      buf = '';
      let cmd: ControlCommand;
      try {
        cmd = (JSON.parse(line) as { cmd: ControlCommand }).cmd;
      } catch {
        sock.end(`${JSON.stringify({ ok: false, error: { code: 'BAD_REQUEST', message: 'not JSON' } })}\n`);
        return;
      }
      handler(cmd).then(
        (result) => sock.end(`${JSON.stringify({ ok: true, result })}\n`),
        (e: unknown) => {
          const err =
            e instanceof TetherError
              ? { code: e.code, message: e.message, status: e.status }
              : { code: 'INTERNAL', message: e instanceof Error ? e.message : String(e), status: 500 };
          sock.end(`${JSON.stringify({ ok: false, error: err })}\n`);
        },
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(path, 0o600);
  return server;
}

export function closeControl(server: Server, stateDir: string): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    try {
      unlinkSync(socketPath(stateDir));
    } catch {
      // already gone
    }
  });
}
