import type { Writable } from 'node:stream';
import type {
  AcceptConnection,
  Client,
  ClientChannel,
  PseudoTtyInfo,
  RejectConnection,
  ServerChannel,
  Session,
  TcpipRequestInfo,
} from 'ssh2';
import type { Logger } from '../../log/index.js';
import { relay } from '../../tunnel/pipe.js';
import type { TargetRoute } from './realms/types.js';

/** What a relay needs from the connection it belongs to. */
export interface RelayContext {
  target: Client;
  route: TargetRoute;
  log: Logger;
  /** Counts payload bytes (user → target, target → user); also marks the connection active. */
  count(up: number, down: number): void;
  /** A number for each channel, for the audit log. */
  nextChannel(): number;
  now(): number;
}

/** Environment variables a user may pass on (the target's sshd still applies its AcceptEnv). */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const MAX_ENV = 64;

type Kind = 'shell' | 'exec' | 'subsystem';

/** Waits until everything written to `w` so far has been handed to the SSH layer. */
function flushed(w: Writable): Promise<void> {
  if (!w.writable || w.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      w.off('close', done);
      resolve();
    };
    w.once('close', done);
    w.write(Buffer.alloc(0), done);
  });
}

/**
 * Relays one session channel. The user's pty, env and window size are collected until the
 * shell, exec or `sftp` subsystem request; then the proxy opens the same on the target and
 * pipes stdin, stdout and stderr both ways with backpressure, passes window changes and signals,
 * and hands the target's exit status (or signal) back before closing. x11, agent forwarding and
 * other subsystems are refused.
 */
export function relaySession(session: Session, rc: RelayContext): void {
  const { log } = rc;
  const channel = rc.nextChannel();
  let pty: PseudoTtyInfo | undefined;
  const env: Record<string, string> = {};
  let started = false;
  let closed = false;
  let ch: ClientChannel | undefined;

  const refused = (what: string) =>
    log.info(
      { event: 'ssh_proxy.request.refused', audit: true, channel, request: what },
      `refused ${what} on a session`,
    );

  session.on('pty', (accept, reject, info) => {
    if (started) return reject?.();
    pty = { ...info };
    accept?.();
  });
  session.on('env', (accept, reject, info) => {
    if (
      started ||
      Object.keys(env).length >= MAX_ENV ||
      !ENV_NAME.test(info.key) ||
      String(info.val).length > 8192
    )
      return reject?.();
    env[info.key] = String(info.val);
    accept?.();
  });
  session.on('window-change', (accept, _reject, info) => {
    if (ch) ch.setWindow(info.rows, info.cols, info.height, info.width);
    else if (pty)
      Object.assign(pty, { rows: info.rows, cols: info.cols, height: info.height, width: info.width });
    accept?.();
  });
  session.on('signal', (accept, reject, info) => {
    if (!ch) return reject?.();
    try {
      ch.signal(info.name);
      accept?.();
    } catch {
      reject?.();
    }
  });
  session.on('x11', (_accept, reject) => {
    refused('x11-req');
    reject?.();
  });
  session.on('auth-agent', (_accept, reject) => {
    refused('auth-agent-req');
    reject?.();
  });
  session.on('close', () => {
    closed = true;
    ch?.close();
  });

  const start = (
    kind: Kind,
    arg: string | undefined,
    accept: AcceptConnection<ServerChannel>,
    reject: RejectConnection,
  ) => {
    if (started || closed) return reject?.();
    started = true;
    // Accept at once: ssh2 drops an EOF that arrives on a session before its channel exists, and
    // OpenSSH sends one right after `exec` when stdin is empty. Input waits (paused) until the
    // target's channel is open; a target that refuses gets the user an error and exit status 1.
    const user = accept();
    if (!user) return;
    user.pause();
    user.on('error', () => {});
    const ptyOpts = pty
      ? {
          rows: pty.rows,
          cols: pty.cols,
          height: pty.height,
          width: pty.width,
          term: pty.term,
          modes: pty.modes,
        }
      : undefined;
    const refusedByTarget = (why: string) => {
      log.info(
        { event: 'ssh_proxy.session.refused_by_target', audit: true, channel, kind, err: why },
        `the target refused the ${kind} request`,
      );
      if (user.writable) {
        user.stderr.write(
          `tether: target ${rc.route.name} refused the ${kind === 'subsystem' ? `${arg} subsystem` : kind} request\r\n`,
        );
        user.exit(1);
        user.end();
      }
    };
    const opened = (err: Error | undefined, c: ClientChannel) => {
      if (err) return refusedByTarget(err.message);
      if (closed) {
        c.close();
        return;
      }
      ch = c;
      wire(user, c, kind, arg);
    };
    try {
      if (kind === 'shell') rc.target.shell(ptyOpts ?? false, { env }, opened);
      else if (kind === 'exec') rc.target.exec(arg ?? '', { env, pty: ptyOpts }, opened);
      else rc.target.subsys(arg ?? 'sftp', opened);
    } catch (err) {
      refusedByTarget((err as Error).message);
    }
  };

  session.on('shell', (accept, reject) => start('shell', undefined, accept, reject));
  session.on('exec', (accept, reject, info) => start('exec', info.command, accept, reject));
  session.on('subsystem', (accept, reject, info) => {
    if (info.name !== 'sftp') {
      refused(`subsystem ${info.name.slice(0, 64)}`);
      return reject?.();
    }
    start('subsystem', 'sftp', accept, reject);
  });

  const wire = (user: ServerChannel, target: ClientChannel, kind: Kind, arg: string | undefined) => {
    const since = rc.now();
    let up = 0;
    let down = 0;
    log.info(
      {
        event: 'ssh_proxy.session.started',
        audit: true,
        target: rc.route.name,
        channel,
        kind,
        ...(kind === 'subsystem' ? { subsystem: arg } : {}),
        pty: pty !== undefined,
      },
      `${kind === 'subsystem' ? `subsystem ${arg}` : kind} started on ${rc.route.name}`,
    );
    user.on('data', (d: Buffer) => {
      up += d.length;
      rc.count(d.length, 0);
    });
    const onDown = (d: Buffer) => {
      down += d.length;
      rc.count(0, d.length);
    };
    target.on('data', onDown);
    target.stderr.on('data', onDown);
    target.on('error', () => {});

    target.pipe(user, { end: false });
    target.stderr.pipe(user.stderr, { end: false });
    // The user's EOF (end of stdin) becomes the target's EOF: scp and `ssh host cmd < file` rely on it.
    user.pipe(target);
    user.on('close', () => target.close());

    let exit: { code: number } | { signal: string; dump: boolean; desc: string } | undefined;
    target.on('exit', (code: number | null, signal?: string, dump?: boolean | string, desc?: string) => {
      exit =
        code !== null && code !== undefined
          ? { code }
          : { signal: signal ?? 'SIGKILL', dump: dump === true, desc: desc ?? '' };
    });
    const stderrDone = new Promise<void>((r) => {
      target.stderr.once('end', r);
      target.stderr.once('close', r);
    });
    const targetClosed = new Promise<void>((r) => target.once('close', () => r()));

    void Promise.all([targetClosed, stderrDone]).then(async () => {
      target.unpipe(user);
      target.stderr.unpipe(user.stderr);
      user.unpipe(target);
      await flushed(user);
      await flushed(user.stderr);
      if (exit && 'code' in exit) user.exit(exit.code);
      else if (exit) {
        try {
          user.exit(exit.signal, exit.dump, exit.desc);
        } catch {
          user.exit(255);
        }
      }
      user.end();
      log.info(
        {
          event: 'ssh_proxy.session.ended',
          audit: true,
          target: rc.route.name,
          channel,
          kind,
          ...(exit && 'code' in exit ? { exit_code: exit.code } : exit ? { exit_signal: exit.signal } : {}),
          bytes_in: up,
          bytes_out: down,
          duration_ms: rc.now() - since,
        },
        `${kind} ended on ${rc.route.name}`,
      );
    });
  };
}

/** Relays one `direct-tcpip` channel (`ssh -L`) through the target, where the route allows it. */
export function relayDirectTcpip(
  accept: AcceptConnection<ServerChannel>,
  reject: RejectConnection,
  info: TcpipRequestInfo,
  rc: RelayContext,
): void {
  const { log } = rc;
  const channel = rc.nextChannel();
  const dest = `${String(info.destIP).slice(0, 255)}:${info.destPort}`;
  if (!rc.route.allowPortForwarding) {
    log.info(
      {
        event: 'ssh_proxy.channel.refused',
        audit: true,
        channel,
        type: 'direct-tcpip',
        dest,
        target: rc.route.name,
      },
      'port forwarding is not allowed on this route',
    );
    reject();
    return;
  }
  try {
    rc.target.forwardOut(info.srcIP, info.srcPort, info.destIP, info.destPort, (err, ch) => {
      if (err) {
        log.info(
          {
            event: 'ssh_proxy.channel.refused_by_target',
            audit: true,
            channel,
            type: 'direct-tcpip',
            dest,
            err: err.message,
          },
          'the target refused the forward',
        );
        return reject();
      }
      const user = accept();
      const since = rc.now();
      log.info(
        {
          event: 'ssh_proxy.session.started',
          audit: true,
          target: rc.route.name,
          channel,
          kind: 'direct-tcpip',
          dest,
        },
        `direct-tcpip to ${dest} started on ${rc.route.name}`,
      );
      user.on('data', (d: Buffer) => rc.count(d.length, 0));
      ch.on('data', (d: Buffer) => rc.count(0, d.length));
      relay(user, ch, (r) => {
        log.info(
          {
            event: 'ssh_proxy.session.ended',
            audit: true,
            target: rc.route.name,
            channel,
            kind: 'direct-tcpip',
            dest,
            bytes_in: r.aToB,
            bytes_out: r.bToA,
            duration_ms: rc.now() - since,
          },
          `direct-tcpip to ${dest} ended`,
        );
      });
    });
  } catch {
    reject();
  }
}
