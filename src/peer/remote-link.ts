import { isIP } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import ssh2, { type ClientChannel, type TcpConnectionDetails } from 'ssh2';
import { formatHostPort, type HostPort } from '../config/host-port.js';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../log/index.js';
import { type BackoffPolicy, backoffDelay, DEFAULT_BACKOFF } from '../tunnel/backoff.js';
import { sshClientConfig } from '../tunnel/ssh-client.js';
import { describeTlsError, peerIdentityCheck, type TlsMaterial } from '../tunnel/tls-material.js';

/** Where a link stands. `failed` keeps retrying; `closed` is final. */
export type LinkState =
  | { readonly kind: 'connecting'; readonly reason: string }
  | { readonly kind: 'up' }
  | { readonly kind: 'failed'; readonly reason: string; readonly attempts: number; readonly retryAt: number }
  | { readonly kind: 'closed' };

/** What a link tells its owner. */
export interface LinkEvents {
  /** The SSH session is up (first time or after a reconnect). */
  up(): void;
  /** The session went away or an attempt failed; state says which. */
  changed(): void;
  /** The remote peer carries back a connection that arrived on one of our forwarded ports. */
  incoming(info: TcpConnectionDetails, accept: () => ClientChannel, reject: () => void): void;
}

export interface RemoteLinkDeps {
  logger: Logger;
  clock: Clock;
  random: () => number;
  tls?: TlsMaterial;
  backoff?: BackoffPolicy;
  /** A connection attempt that is not up by then has failed. */
  connectTimeoutMs?: number;
}

const SSH_USER = 'tether-peer';

/** A connection error in words, with the address it concerns. */
export function describeConnectError(e: unknown, addr: string, tls: boolean): string {
  const err = e as NodeJS.ErrnoException;
  switch (err.code) {
    case 'ECONNREFUSED':
      return `cannot reach the remote peer at ${addr}: connection refused`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot reach the remote peer at ${addr}: host not found`;
    case 'ETIMEDOUT':
      return `cannot reach the remote peer at ${addr}: connection timed out`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `cannot reach the remote peer at ${addr}: no route to host`;
    case 'ECONNRESET':
      return `the remote peer at ${addr} reset the connection${tls ? ' (did it refuse our certificate?)' : ''}`;
  }
  const msg = err.message ?? String(e);
  if (/Connection lost before handshake/i.test(msg)) {
    return tls
      ? `the remote peer at ${addr} closed the connection before the SSH handshake (is it a tether peer tunnel port?)`
      : `the remote peer at ${addr} closed the connection before the SSH handshake (does it require mTLS? this peer runs without certificates)`;
  }
  if (/handshake|Protocol mismatch|identification/i.test(msg) && !/SSL|TLS|alert/i.test(msg)) {
    return `no SSH handshake with ${addr}: ${msg} (is it a tether peer tunnel port${tls ? ' with mTLS' : ''}?)`;
  }
  if (tls || /SSL|TLS|alert|certificate/i.test(msg)) {
    return `TLS with the remote peer at ${addr} failed: ${describeTlsError(e, 'client')}`;
  }
  return `connection to the remote peer at ${addr} failed: ${msg}`;
}

/**
 * One SSH session to one remote peer's tunnel port, kept up: reconnects with full-jitter
 * exponential backoff after a failed attempt or a lost session, until closed.
 */
export class RemoteLink {
  readonly label: string;
  private readonly log: Logger;
  private readonly backoff: BackoffPolicy;
  private readonly connectTimeoutMs: number;
  private client: ssh2.Client | undefined;
  private current: ssh2.Client | undefined;
  private timer: unknown;
  private failures = 0;
  private _state: LinkState;
  /** Bumped on every new session, so late answers from an old one are ignored. */
  generation = 0;

  constructor(
    readonly addr: HostPort,
    private readonly deps: RemoteLinkDeps,
    private readonly events: LinkEvents,
  ) {
    this.label = formatHostPort(addr);
    this.log = deps.logger.child({ remote: this.label });
    this.backoff = deps.backoff ?? DEFAULT_BACKOFF;
    this.connectTimeoutMs = deps.connectTimeoutMs ?? 10_000;
    this._state = { kind: 'connecting', reason: `connecting to the remote peer at ${this.label}` };
  }

  get state(): LinkState {
    return this._state;
  }

  start(): void {
    this.attempt();
  }

  /** Tries now instead of waiting out the backoff (a new exposure wants this link). */
  kick(): void {
    if (this._state.kind !== 'failed' || this.timer === undefined) return;
    this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.attempt();
  }

  close(): void {
    if (this._state.kind === 'closed') return;
    this._state = { kind: 'closed' };
    if (this.timer !== undefined) this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.current?.end();
    this.client?.end();
    this.client = undefined;
    this.current = undefined;
  }

  /** Asks the remote peer to listen on bindAddr:port and carry connections back. */
  forwardIn(bindAddr: string, port: number): Promise<void> {
    const c = this.client;
    if (!c) return Promise.reject(new Error('not connected'));
    return new Promise((resolve, reject) =>
      c.forwardIn(bindAddr, port, (err) => (err ? reject(err) : resolve())),
    );
  }

  unforwardIn(bindAddr: string, port: number): Promise<void> {
    const c = this.client;
    if (!c) return Promise.resolve();
    return new Promise((resolve) => c.unforwardIn(bindAddr, port, () => resolve()));
  }

  /** Asks the remote peer to dial host:port and returns the channel to it. */
  openDirect(host: string, port: number, srcIP: string, srcPort: number): Promise<ClientChannel> {
    const c = this.client;
    if (!c) return Promise.reject(new Error(`not connected to the remote peer at ${this.label}`));
    return new Promise((resolve, reject) =>
      c.forwardOut(srcIP, srcPort, host, port, (err, ch) => (err ? reject(err) : resolve(ch))),
    );
  }

  private setState(s: LinkState): void {
    this._state = s;
    this.events.changed();
  }

  private attempt(): void {
    this.timer = undefined;
    if (this._state.kind === 'closed') return;
    const client = new ssh2.Client();
    this.current = client;
    const addr = this.label;
    const useTls = this.deps.tls !== undefined;
    let settled = false;
    let timeout: unknown;
    let tlsSocket: TLSSocket | undefined;
    const fail = (reason: string) => {
      if (settled) return;
      settled = true;
      this.deps.clock.clearTimeout(timeout);
      client.removeAllListeners('ready');
      client.end();
      tlsSocket?.destroy();
      if (this.current === client) this.current = undefined;
      this.onAttemptFailed(reason);
    };
    timeout = this.deps.clock.setTimeout(
      () =>
        fail(`cannot reach the remote peer at ${addr}: no answer within ${this.connectTimeoutMs / 1000} s`),
      this.connectTimeoutMs,
    );
    client.on('ready', () => {
      if (settled || this._state.kind === 'closed') {
        client.end();
        return;
      }
      settled = true;
      this.deps.clock.clearTimeout(timeout);
      this.client = client;
      this.generation++;
      this.failures = 0;
      this.log.info({ tls: useTls }, 'connected to the remote peer');
      this._state = { kind: 'up' };
      this.events.up();
      this.events.changed();
    });
    client.on('error', (e) => {
      if (!settled) fail(describeConnectError(e, addr, useTls));
      else this.log.debug({ err: e.message }, 'session error');
    });
    client.on('close', () => {
      if (!settled) {
        fail(`the remote peer at ${addr} closed the connection during the handshake`);
        return;
      }
      if (this.client !== client) return;
      this.client = undefined;
      this.current = undefined;
      if (this._state.kind === 'closed') return;
      this.log.warn('lost the session with the remote peer; reconnecting');
      this.setState({
        kind: 'connecting',
        reason: `lost the session with the remote peer at ${addr}; reconnecting`,
      });
      this.schedule(backoffDelay(0, this.deps.random, this.backoff));
    });
    client.on('tcp connection', (info, accept, reject) => this.events.incoming(info, accept, reject));

    const common = sshClientConfig({
      username: SSH_USER,
      readyTimeout: this.connectTimeoutMs,
      // The remote peer is authenticated by TLS (mTLS mode) or trusted (plain mode); its SSH
      // host key is generated at each start, so there is nothing to pin.
      hostVerifier: () => true,
    });
    if (this.deps.tls) {
      const { ca, cert, key } = this.deps.tls;
      const { host, port } = this.addr;
      const sock = tlsConnect({
        host,
        port,
        ca,
        cert,
        key,
        minVersion: 'TLSv1.2',
        ...(isIP(host) === 0 ? { servername: host } : {}),
        checkServerIdentity: peerIdentityCheck(port),
      });
      tlsSocket = sock;
      sock.once('error', (e) => fail(describeConnectError(e, addr, true)));
      sock.once('secureConnect', () => {
        if (settled) {
          sock.destroy();
          return;
        }
        client.connect({ ...common, sock });
      });
    } else {
      client.connect({ ...common, host: this.addr.host, port: this.addr.port });
    }
  }

  private onAttemptFailed(reason: string): void {
    if (this._state.kind === 'closed') return;
    const delay = backoffDelay(this.failures, this.deps.random, this.backoff);
    this.failures++;
    this.log.warn(
      { reason, attempts: this.failures, retryInMs: delay },
      'cannot connect to the remote peer; will retry',
    );
    this.setState({
      kind: 'failed',
      reason,
      attempts: this.failures,
      retryAt: this.deps.clock.now() + delay,
    });
    this.schedule(delay);
  }

  private schedule(delay: number): void {
    if (this.timer !== undefined) this.deps.clock.clearTimeout(this.timer);
    this.timer = this.deps.clock.setTimeout(() => this.attempt(), delay);
  }
}
