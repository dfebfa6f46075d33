/**
 * The client side of the tunnel: one SSH session to the gateway (the connector's), with the
 * `tether-control` channel, remote forwards labelled `<group>/<repo>`, and incoming
 * `forwarded-tcpip` channels handed to whoever owns the session. Also the short enrollment
 * session (`tether-enroll`).
 *
 * This file knows SSH and the control protocol, nothing about connect.yaml: the caller gives
 * it a host-key policy and decides where incoming connections go.
 */

import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { hostname } from 'node:os';
import type { Duplex } from 'node:stream';
import ssh2, { type ClientChannel, type TcpConnectionDetails } from 'ssh2';
import { TetherError, toErrorCode } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import { describeFailure, tcpDial } from './client-dial.js';
import {
  CONTROL_SUBSYSTEM,
  CONTROL_VERSION,
  type ConnectorMessage,
  ENROLL_USER,
  encode,
  type GatewayMessage,
  JsonLineDecoder,
} from './control-protocol.js';
import { sshClientConfig } from './ssh-client.js';
import { channelWindowOptions, DEFAULT_MAX_WINDOW } from './windows.js';

const { Client } = ssh2;
type SshClient = InstanceType<typeof Client>;

export type HostKeyDecision =
  | { ok: true; fingerprint: string }
  | { ok: false; fingerprint: string; error: Error };

export interface TunnelClientOptions {
  host: string;
  port: number;
  /** Tenant id (or ENROLL_USER for enrollment). */
  username: string;
  /** OpenSSH private key text. Never logged. */
  privateKey: string | Buffer;
  /** Fingerprint of that key, for messages. */
  keyFingerprint?: string;
  /** Decides whether the gateway's host key blob is trusted. */
  verifyHostKey: (blob: Buffer) => HostKeyDecision;
  /** e.g. "tether-connector/0.1.0" */
  agent: string;
  keepaliveInterval?: number;
  keepaliveCountMax?: number;
  /** Ceiling of each channel's adaptive receive window (bytes); connect.yaml `max_window`. */
  maxWindow?: number;
  /** TCP connect + SSH handshake + auth + control channel + welcome, ms. */
  readyTimeout?: number;
  /** Wait for the gateway's `welcome` before resolving (not on enrollment sessions). */
  waitWelcome?: boolean;
  logger: Logger;
  /** A transport already connected to the gateway (TLS, WebSocket…); default: TCP to host:port. */
  dial?: () => Promise<Duplex>;
  /** How messages name the gateway (e.g. "wss://gw.example.com/tunnel"); default host:port. */
  gatewayLabel?: string;
}

export type WelcomeMessage = Extract<GatewayMessage, { type: 'welcome' }>;
export type RefusedMessage = Extract<GatewayMessage, { type: 'refused' }>;

export interface IncomingConnection {
  label: string;
  port: number;
  info: TcpConnectionDetails;
  accept: () => ClientChannel;
  reject: () => void;
}

interface SessionEvents {
  /** The session ended; `error` says why when it was not asked for. */
  close: [error: Error | undefined];
  message: [msg: GatewayMessage];
  connection: [conn: IncomingConnection];
}

/** A user-facing error for a session that could not be set up. */
/** One live SSH session with the gateway. Build it with `TunnelSession.open`. */
export class TunnelSession extends EventEmitter<SessionEvents> {
  welcome: WelcomeMessage | undefined;
  /** SHA256 fingerprint of the gateway's host key. */
  hostFingerprint = '';
  readonly openedAt = Date.now();
  private control: ClientChannel | undefined;
  private closed = false;
  private pingSeq = 0;
  private readonly pongs = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  /** Refusals of forwards this session is asking for (only those: a gateway cannot grow it). */
  private readonly refusals = new Map<string, RefusedMessage>();
  private readonly asking = new Set<string>();
  private readonly waiters = new Set<(msg: GatewayMessage) => boolean>();

  private constructor(
    private readonly client: SshClient,
    private readonly opts: TunnelClientOptions,
  ) {
    super();
  }

  /** Connects, authenticates, opens the control channel and says hello. */
  static open(opts: TunnelClientOptions): Promise<TunnelSession> {
    const log = opts.logger;
    const readyTimeout = opts.readyTimeout ?? 20_000;
    const client = new Client();
    const session = new TunnelSession(client, opts);
    let hostKeyError: Error | undefined;
    /** Lines the gateway sent before its SSH identification: why it refuses (wrong transport). */
    let greeting = '';

    return new Promise<TunnelSession>((resolve, reject) => {
      let settled = false;
      const deadline = setTimeout(() => {
        fail(Object.assign(new Error('no answer within the time limit'), { level: 'client-timeout' }));
      }, readyTimeout);
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        client.end();
        client.destroy?.();
        if (greeting && !hostKeyError && !(err instanceof TetherError)) {
          const addr = opts.gatewayLabel ?? `${opts.host}:${opts.port}`;
          reject(
            new TetherError('GATEWAY_REFUSED', `the gateway at ${addr} refused the connection: ${greeting}`, {
              status: 502,
              retryable: true,
              cause: err,
            }),
          );
          return;
        }
        reject(hostKeyError ?? describeFailure(opts, err));
      };
      const succeed = () => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        resolve(session);
      };

      client.on('error', (err: Error) => {
        if (!settled) fail(err);
        else session.shutdown(describeFailure(opts, err));
      });
      client.on('close', () => {
        if (!settled) fail(new Error('the gateway closed the connection during setup'));
        else session.shutdown(undefined);
      });
      client.on('greeting', (text: string) => {
        greeting = text
          .replace(/[^\x20-\x7e\n]/g, '')
          .trim()
          .replace(/^tether:\s*/i, '')
          .replace(/\s+/g, ' ')
          .slice(0, 300);
      });
      client.on('tcp connection', (info, accept, reject) => {
        session.emit('connection', { label: info.destIP, port: info.destPort, info, accept, reject });
      });
      client.on('ready', () => {
        client.subsys(CONTROL_SUBSYSTEM, (err, stream) => {
          if (err) {
            fail(new Error(`the gateway refused the control channel: ${err.message}`));
            return;
          }
          session.attachControl(stream);
          // An enrollment session says nothing but `enroll`.
          if (opts.username !== ENROLL_USER) {
            session.send({
              type: 'hello',
              version: CONTROL_VERSION,
              agent: opts.agent,
              hostname: hostname(),
            });
          }
          if (opts.waitWelcome === false) succeed();
          else {
            // onMessage keeps `welcome` current: the gateway may send a second, fuller one.
            session
              .waitFor((m) => m.type === 'welcome', readyTimeout)
              .then(
                () => succeed(),
                (e: Error) => fail(e),
              );
          }
        });
      });

      const dial = opts.dial ?? (() => tcpDial(opts.host, opts.port, readyTimeout));
      dial().then(
        (sock) => {
          if (settled) {
            sock.destroy();
            return;
          }
          client.connect({
            sock: sock as unknown as Socket,
            ...sshClientConfig({
              username: opts.username,
              privateKey: opts.privateKey,
              ident: opts.agent.replace(/[^A-Za-z0-9._-]/g, '_'),
              keepaliveInterval: opts.keepaliveInterval,
              keepaliveCountMax: opts.keepaliveCountMax,
              readyTimeout,
              hostVerifier: (key: Buffer) => {
                const d = opts.verifyHostKey(key);
                session.hostFingerprint = d.fingerprint;
                if (!d.ok) {
                  hostKeyError = d.error;
                  return false;
                }
                return true;
              },
            }),
            ...channelWindowOptions({ maxWindow: opts.maxWindow ?? DEFAULT_MAX_WINDOW }),
          });
        },
        (e: Error) => fail(e),
      );
      log.debug({ gateway: `${opts.host}:${opts.port}`, user: opts.username }, 'dialing the gateway');
    });
  }

  private attachControl(stream: ClientChannel): void {
    this.control = stream;
    const decoder = new JsonLineDecoder(
      (m) => this.onMessage(m as unknown as GatewayMessage),
      (why) => this.opts.logger.warn({ why }, 'bad control line from the gateway'),
    );
    stream.on('data', (c: Buffer) => decoder.push(c));
    stream.stderr.resume();
    stream.on('close', () => {
      if (!this.closed) {
        this.shutdown(
          new TetherError('GATEWAY_SESSION_FAILED', 'the gateway closed the control channel', {
            status: 503,
          }),
        );
      }
    });
  }

  private onMessage(msg: GatewayMessage): void {
    switch (msg.type) {
      case 'pong': {
        const waiter = this.pongs.get(msg.id);
        this.pongs.delete(msg.id);
        waiter?.resolve();
        break;
      }
      case 'refused':
        if (typeof msg.label === 'string' && this.asking.has(msg.label)) this.refusals.set(msg.label, msg);
        break;
      case 'welcome':
        this.welcome = msg;
        break;
      default:
        break;
    }
    for (const w of [...this.waiters]) if (w(msg)) this.waiters.delete(w);
    this.emit('message', msg);
  }

  /** Resolves with the first message `pred` accepts; rejects on timeout or when the session ends. */
  waitFor(pred: (m: GatewayMessage) => boolean, timeoutMs: number): Promise<GatewayMessage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        this.off('close', onClose);
        reject(
          new TetherError('GATEWAY_TIMEOUT', `no answer from the gateway within ${timeoutMs} ms`, {
            status: 503,
          }),
        );
      }, timeoutMs);
      const onClose = (err: Error | undefined) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        reject(
          err ??
            new TetherError('GATEWAY_SESSION_FAILED', 'the session with the gateway ended', { status: 503 }),
        );
      };
      const check = (m: GatewayMessage): boolean => {
        if (!pred(m)) return false;
        clearTimeout(timer);
        this.off('close', onClose);
        resolve(m);
        return true;
      };
      this.waiters.add(check);
      this.once('close', onClose);
    });
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  send(msg: ConnectorMessage): void {
    if (this.closed || !this.control) return;
    this.control.write(encode(msg));
  }

  /**
   * Asks for the remote forward `label`; resolves with the lease port. A refusal rejects with
   * the gateway's reason (from its `refused` message when it sends one).
   */
  forward(label: string): Promise<number> {
    this.refusals.delete(label);
    this.asking.add(label);
    const done = () => {
      this.asking.delete(label);
      this.refusals.delete(label);
    };
    return new Promise<number>((resolve, reject) => {
      try {
        this.client.forwardIn(label, 0, (err, port) => {
          if (!err) {
            resolve(port);
            return;
          }
          const known = this.refusals.get(label);
          if (known) {
            reject(refusalError(known));
            return;
          }
          // The reason may still be on its way on the control channel.
          this.waitFor((m) => m.type === 'refused' && m.label === label, 1000).then(
            (m) => reject(refusalError(m as RefusedMessage)),
            () =>
              reject(
                new TetherError('FORWARD_REFUSED', `refused by the gateway: ${err.message}`, { status: 403 }),
              ),
          );
        });
      } catch (e) {
        reject(describeFailure(this.opts, e as Error));
      }
    }).finally(done);
  }

  /** Cancels a forward; resolves when the gateway confirms (or the session is gone). */
  unforward(label: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      try {
        this.client.unforwardIn(label, port, (err) => (err ? reject(err) : resolve()));
      } catch (e) {
        reject(e);
      }
    });
  }

  /** Round trip over the control channel, ms. */
  ping(timeoutMs = 5000): Promise<number> {
    const id = ++this.pingSeq;
    const start = process.hrtime.bigint();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pongs.delete(id);
        reject(
          new TetherError('GATEWAY_TIMEOUT', `no pong from the gateway within ${timeoutMs} ms`, {
            status: 503,
          }),
        );
      }, timeoutMs);
      this.pongs.set(id, {
        resolve: () => {
          clearTimeout(timer);
          resolve(Number(process.hrtime.bigint() - start) / 1e6);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.send({ type: 'ping', id });
    });
  }

  /**
   * Removes this session's key from the tenant; resolves with the removed fingerprint. The
   * gateway may end the session (the key is gone) before its answer arrives: then this
   * rejects with GATEWAY_SESSION_FAILED and the caller can check by logging in again.
   */
  async unregister(timeoutMs = 10_000): Promise<string> {
    const answer = this.waitFor(
      (m) => m.type === 'unregistered' || (m.type === 'error' && m.code !== 'SESSION_ENDED'),
      timeoutMs,
    );
    this.send({ type: 'unregister' });
    const m = await answer;
    if (m.type === 'unregistered') return m.fingerprint;
    const e = m as Extract<GatewayMessage, { type: 'error' }>;
    throw new TetherError(
      toErrorCode(e.code, 'UNREGISTER_FAILED'),
      `the gateway refused to unregister: ${e.message}`,
      {
        status: 403,
      },
    );
  }

  /** Ends the session. */
  close(): void {
    if (this.closed) return;
    try {
      this.control?.end();
    } catch {
      // already gone
    }
    this.client.end();
    this.shutdown(undefined);
  }

  private shutdown(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    const gone =
      err ?? new TetherError('GATEWAY_SESSION_FAILED', 'the session with the gateway ended', { status: 503 });
    for (const w of this.pongs.values()) w.reject(gone);
    this.pongs.clear();
    try {
      this.client.end();
    } catch {
      // already gone
    }
    // A dead peer may never answer the disconnect: make sure the socket goes.
    setTimeout(() => this.client.destroy?.(), 1000).unref();
    this.emit('close', err);
  }
}

function refusalError(m: RefusedMessage): TetherError {
  return new TetherError(toErrorCode(m.code, 'FORWARD_REFUSED'), m.reason, { status: 403 });
}

export interface EnrollOptions extends Omit<TunnelClientOptions, 'username' | 'waitWelcome'> {
  token: string;
}

/**
 * Enrolls the key in `privateKey` with the tenant a one-time token names. Connects as
 * `tether-enroll`; the gateway lets that user do nothing but this.
 */
export async function enroll(opts: EnrollOptions): Promise<{ tenant: string; fingerprint: string }> {
  const session = await TunnelSession.open({ ...opts, username: ENROLL_USER, waitWelcome: false });
  try {
    const answer = session.waitFor(
      (m) => m.type === 'enrolled' || m.type === 'error',
      opts.readyTimeout ?? 20_000,
    );
    session.send({ type: 'enroll', token: opts.token });
    const m = await answer;
    if (m.type === 'enrolled') return { tenant: m.tenant, fingerprint: m.fingerprint };
    const e = m as Extract<GatewayMessage, { type: 'error' }>;
    throw new TetherError(toErrorCode(e.code, 'ENROLLMENT_INVALID'), `enrollment refused: ${e.message}`, {
      status: 403,
    });
  } finally {
    session.close();
  }
}
