import type { AuthContext, AuthenticationType, Connection, KeyboardAuthContext } from 'ssh2';
import type { SshAlgorithmLists } from '../../config/ssh-algorithms.js';
import type { Clock } from '../../core/clock.js';
import type { RefusalLog } from '../../core/refusals.js';
import type { FailureThrottle } from '../../core/throttle.js';
import { isTetherError } from '../../errors/index.js';
import type { Logger } from '../../log/index.js';
import { socketOf } from '../../tunnel/ssh2-adapter.js';
import { DISCONNECT, disconnectWithReason } from './disconnect.js';
import { type LoginDecision, type Realm, refuse, type TargetRoute } from './realms/types.js';
import { type RelayContext, relayDirectTcpip, relaySession } from './relay.js';
import { connectTarget, type TargetConnection } from './target.js';
import { type ProxyUsername, parseProxyUsername } from './username.js';

export interface ConnectionSettings {
  handshakeTimeout: number;
  idleTimeout: number;
  connectTimeout: number;
  keepaliveInterval: number;
  keepaliveCountMax: number;
  maxAuthTries: number;
  ident: string;
  /** SSH algorithms offered to targets (default: COMPATIBLE_ALGORITHMS). */
  targetAlgorithms?: SshAlgorithmLists;
}

export interface ConnectionDeps {
  realms: ReadonlyMap<string, Realm>;
  throttle: FailureThrottle;
  clock: Clock;
  log: Logger;
  settings: ConnectionSettings;
  /** The gateway's metrics (one front-door request per connection, refused logins). */
  metrics?: SshProxyMetrics;
  /** Logs bound refusals once per burst (channels per connection). */
  refusals?: RefusalLog;
}

/** Channels (sessions and direct-tcpip) one logged-in connection may have open at once. */
export const MAX_CHANNELS_PER_CONNECTION = 64;

export interface SshProxyMetrics {
  frontDoorRequest(frontDoor: string, outcome: string, seconds?: number): void;
  readonly authFailures: { inc(labels: { reason: string }): void };
}

/** The methods offered for the secret; `keyboard-interactive` first, as OpenSSH prefers it. */
const METHODS: AuthenticationType[] = ['keyboard-interactive', 'password'];
/** Longest secret looked at (a group key is 43 characters, an authorization code far less than this). */
const MAX_SECRET = 4096;

/** "15 minutes", "40 s": for messages. */
export function humanDuration(ms: number): string {
  const s = Math.ceil(ms / 1000);
  if (s < 120) return `${s} s`;
  const m = Math.ceil(s / 60);
  return m < 120 ? `${m} minutes` : `${Math.ceil(m / 60)} hours`;
}

const printableUser = (s: string) => s.replace(/[^\x20-\x7e]/g, '?').slice(0, 80);

/**
 * One user connection: authenticates (username → realm → secret), throttles, reaches and
 * verifies the target before it accepts the login, then relays channels. Every refusal that
 * can never succeed on this connection ends it with SSH_MSG_DISCONNECT carrying the reason.
 */
export class ProxyConnection {
  private readonly log: Logger;
  private readonly since: number;
  private attempts = 0;
  private lastFailure?: string;
  private parsed?: { username: string; value: ProxyUsername; realm: Realm };
  private route?: TargetRoute;
  private target?: TargetConnection;
  private closing = false;
  private closed = false;
  /** How the connection ended up, for the front-door metrics. */
  private outcome = 'abandoned';
  private up = 0;
  private down = 0;
  private lastActivity = 0;
  private channels = 0;
  private handshakeTimer: unknown;
  private idleTimer: unknown;

  constructor(
    private readonly client: Connection,
    private readonly source: { ip: string; port: number },
    private readonly deps: ConnectionDeps,
    private readonly onAuthenticated: () => void,
  ) {
    this.log = deps.log.child({ source: `${source.ip}:${source.port}` });
    this.since = deps.clock.now();
    this.handshakeTimer = deps.clock.setTimeout(() => {
      this.log.info({ event: 'ssh_proxy.handshake_timeout', audit: true }, 'login not completed in time');
      this.close(
        DISCONNECT.BY_APPLICATION,
        `login not completed within ${humanDuration(deps.settings.handshakeTimeout)}`,
      );
    }, deps.settings.handshakeTimeout);

    client.on('error', (err) => this.log.debug({ err: err.message }, 'ssh proxy connection error'));
    client.on('authentication', (ctx: AuthContext) => this.onAuth(ctx));
    client.on('ready', () => this.onReady());
    client.on('close', () => this.onClose());
  }

  /** Ends the connection, telling the user why. */
  close(code: number, reason: string): void {
    if (this.closing || this.closed) return;
    this.closing = true;
    disconnectWithReason(this.client, code, `tether: ${reason}`);
    const sock = socketOf(this.client);
    this.deps.clock.setTimeout(() => sock?.destroy(), 2_000);
    this.target?.close(this.up, this.down);
  }

  private audit(
    event: string,
    fields: Record<string, unknown>,
    msg: string,
    level: 'info' | 'warn' = 'info',
  ): void {
    this.log[level]({ event: `ssh_proxy.${event}`, audit: true, ...fields }, msg);
    if (event === 'login.failed') {
      this.outcome = 'denied';
      this.deps.metrics?.authFailures.inc({ reason: 'ssh_proxy' });
    } else if (event === 'login.succeeded') this.outcome = 'allowed';
    else if (event === 'target.failed') this.outcome = 'target_failed';
  }

  /** Username → realm; ends the connection when either is wrong. Runs before any secret is asked for. */
  private identify(username: string): boolean {
    if (this.parsed?.username === username) return true;
    const p = parseProxyUsername(username);
    if (!p.ok) {
      this.audit(
        'login.failed',
        { user: printableUser(username), code: 'BAD_USERNAME', reason: p.reason },
        'login refused: malformed username',
      );
      this.close(DISCONNECT.ILLEGAL_USER_NAME, `invalid username: ${p.reason}`);
      return false;
    }
    const realm = this.deps.realms.get(p.value.realm);
    if (!realm) {
      const offered = [...this.deps.realms.keys()].sort().join(', ');
      this.audit('login.failed', { user: username, code: 'UNKNOWN_REALM' }, 'login refused: unknown realm');
      this.close(
        DISCONNECT.ILLEGAL_USER_NAME,
        `unknown realm "${p.value.realm}" (this gateway offers: ${offered})`,
      );
      return false;
    }
    const problem = realm.checkTarget?.(p.value.target, p.value.index);
    if (problem) {
      this.audit(
        'login.failed',
        { user: username, code: 'BAD_TARGET', reason: problem },
        'login refused: invalid target',
      );
      this.close(DISCONNECT.ILLEGAL_USER_NAME, `invalid username: ${problem}`);
      return false;
    }
    this.parsed = { username, value: p.value, realm };
    return true;
  }

  private onAuth(ctx: AuthContext): void {
    if (this.closing || this.closed) return;
    const blocked = this.deps.throttle.blockedFor(this.source.ip);
    if (blocked > 0) {
      this.audit(
        'login.failed',
        { user: printableUser(ctx.username), code: 'THROTTLED' },
        'login refused: too many failures from this address',
      );
      this.close(
        DISCONNECT.HOST_NOT_ALLOWED_TO_CONNECT,
        `too many failed logins from ${this.source.ip}; try again in ${humanDuration(blocked)}`,
      );
      return;
    }
    if (!this.identify(ctx.username)) return;
    const { realm } = this.parsed!;
    if (ctx.method === 'password') {
      void this.tryLogin(ctx, ctx.password);
      return;
    }
    if (ctx.method === 'keyboard-interactive') {
      const instructions = this.lastFailure ? `tether: ${this.lastFailure}; try again` : '';
      (ctx as KeyboardAuthContext).prompt(
        [{ prompt: realm.prompt, echo: false }],
        '',
        instructions,
        (answers) => {
          void this.tryLogin(ctx, answers[0] ?? '');
        },
      );
      return;
    }
    ctx.reject(METHODS);
  }

  private async tryLogin(ctx: AuthContext, secret: string): Promise<void> {
    const { value, realm } = this.parsed!;
    const name = `${value.realm}:${value.target}/${value.index}`;
    const ip = this.source.ip;
    let decision: LoginDecision;
    if (secret.length === 0 || secret.length > MAX_SECRET) {
      decision = refuse('BAD_SECRET', secret.length === 0 ? 'empty password' : 'password too long', {
        final: false,
        countsAsFailure: true,
      });
    } else {
      try {
        decision = await realm.login(
          {
            realm: value.realm,
            target: value.target,
            index: value.index,
            secret,
            source: { address: ip, port: this.source.port },
          },
          this.log,
        );
      } catch (err) {
        this.log.error({ err, target: name }, 'login check failed');
        decision = refuse('INTERNAL', 'the gateway could not check the login; try again later', {
          final: true,
          countsAsFailure: false,
        });
      }
    }
    if (this.closing || this.closed) return;

    if (!decision.ok) {
      this.attempts++;
      if (decision.countsAsFailure) this.deps.throttle.fail(ip);
      this.audit(
        'login.failed',
        {
          realm: value.realm,
          target: value.target,
          index: value.index,
          code: decision.code,
          reason: decision.message,
          attempt: this.attempts,
        },
        `login to ${name} refused`,
      );
      const blocked = this.deps.throttle.blockedFor(ip);
      if (decision.final) return this.close(DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE, decision.message);
      if (blocked > 0) {
        return this.close(
          DISCONNECT.HOST_NOT_ALLOWED_TO_CONNECT,
          `${decision.message}; too many failed logins from ${ip}, try again in ${humanDuration(blocked)}`,
        );
      }
      if (this.attempts >= this.deps.settings.maxAuthTries) {
        return this.close(
          DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
          `${decision.message} (${this.attempts} failed attempt${this.attempts === 1 ? '' : 's'}; closing)`,
        );
      }
      this.lastFailure = decision.message;
      ctx.reject(METHODS);
      return;
    }

    // A right password does not clear the source's failures: otherwise one valid credential (a
    // tenant's own group key) would let it keep guessing another's.
    const route = decision.route;
    this.audit(
      'login.succeeded',
      {
        user: this.parsed!.username,
        realm: value.realm,
        target: value.target,
        index: value.index,
        ...(decision.tenant ? { tenant: decision.tenant } : {}),
        ...(decision.principal ? { principal: decision.principal } : {}),
      },
      `login to ${name} accepted`,
    );
    let target: TargetConnection;
    try {
      const s = this.deps.settings;
      target = await connectTarget(route, {
        origin: { address: ip, port: this.source.port },
        timeoutMs: s.connectTimeout,
        keepaliveInterval: s.keepaliveInterval,
        keepaliveCountMax: s.keepaliveCountMax,
        ident: s.ident,
        algorithms: s.targetAlgorithms,
        log: this.log,
      });
    } catch (err) {
      const code = isTetherError(err) ? err.code : 'TARGET_FAILED';
      const message = isTetherError(err) ? err.message : `cannot reach target ${route.name}`;
      if (!isTetherError(err)) this.log.error({ err }, 'target connection failed');
      this.audit(
        'target.failed',
        { target: route.name, address: route.address, code, reason: message },
        `target ${route.name} not reached`,
        'warn',
      );
      this.close(DISCONNECT.BY_APPLICATION, message);
      return;
    }
    if (this.closing || this.closed) {
      target.close(0, 0);
      return;
    }
    this.route = route;
    this.target = target;
    this.audit(
      'target.connected',
      {
        target: route.name,
        address: route.address,
        user: route.user,
        host_key: target.hostKey.sha256,
        host_key_checked: route.hostFingerprint !== undefined,
      },
      `connected to target ${route.name}`,
    );
    target.client.on('error', (err) => this.log.debug({ err: err.message }, 'target connection error'));
    target.client.on('close', () => {
      if (!this.closed)
        this.close(DISCONNECT.CONNECTION_LOST, `the connection to target ${route.name} ended`);
    });
    ctx.accept();
  }

  private onReady(): void {
    const { clock, settings } = this.deps;
    clock.clearTimeout(this.handshakeTimer);
    this.onAuthenticated();
    const target = this.target;
    const route = this.route;
    if (!target || !route) {
      this.close(DISCONNECT.BY_APPLICATION, 'internal error: no target');
      return;
    }
    this.lastActivity = clock.now();
    const rc: RelayContext = {
      target: target.client,
      route,
      log: this.log.child({ target: route.name }),
      count: (up, down) => {
        this.up += up;
        this.down += down;
        this.lastActivity = clock.now();
      },
      nextChannel: () => ++this.channels,
      now: () => clock.now(),
    };
    // Idle channels cost memory on our side before the target ever sees them: bound them.
    let open = 0;
    const full = (type: string): boolean => {
      if (open < MAX_CHANNELS_PER_CONNECTION) return false;
      this.deps.refusals?.refuse(
        'channels_per_connection',
        `ssh_proxy\0${this.source.ip}`,
        { front_door: 'ssh_proxy', source: this.source.ip, type },
        `ssh proxy channel refused: more than ${MAX_CHANNELS_PER_CONNECTION} open on one connection`,
      );
      return true;
    };
    const counted = <T extends { once(ev: 'close', f: () => void): unknown }>(ch: T): T => {
      open++;
      ch.once('close', () => {
        open--;
      });
      return ch;
    };
    this.client.on('session', (accept, reject) => {
      if (full('session')) return reject?.();
      relaySession(counted(accept()), rc);
    });
    this.client.on('tcpip', (accept, reject, info) => {
      if (full('direct-tcpip')) return reject?.();
      relayDirectTcpip(() => counted(accept()), reject, info, rc);
    });
    this.client.on('openssh.streamlocal', (_accept, reject, info: { socketPath?: string }) => {
      this.audit(
        'channel.refused',
        { type: 'direct-streamlocal@openssh.com', path: String(info?.socketPath ?? '').slice(0, 100) },
        'unix socket forwarding refused',
      );
      reject();
    });
    this.client.on('request', (_accept, reject, name) => {
      this.audit('request.refused', { request: String(name) }, `global request ${String(name)} refused`);
      reject?.();
    });
    if (settings.idleTimeout > 0) this.scheduleIdleCheck(settings.idleTimeout);
  }

  private scheduleIdleCheck(inMs: number): void {
    const { clock, settings } = this.deps;
    this.idleTimer = clock.setTimeout(() => {
      if (this.closing || this.closed) return;
      const idle = clock.now() - this.lastActivity;
      if (idle >= settings.idleTimeout) {
        this.audit('idle_timeout', { target: this.route?.name, idle_ms: idle }, 'closing an idle connection');
        this.close(
          DISCONNECT.BY_APPLICATION,
          `no traffic for ${humanDuration(settings.idleTimeout)}; connection closed`,
        );
        return;
      }
      this.scheduleIdleCheck(settings.idleTimeout - idle);
    }, inMs);
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    const { clock } = this.deps;
    clock.clearTimeout(this.handshakeTimer);
    clock.clearTimeout(this.idleTimer);
    this.target?.close(this.up, this.down);
    this.audit(
      'connection.closed',
      {
        ...(this.route ? { target: this.route.name } : {}),
        bytes_in: this.up,
        bytes_out: this.down,
        duration_ms: clock.now() - this.since,
      },
      'ssh proxy connection closed',
    );
    this.deps.metrics?.frontDoorRequest('ssh_proxy', this.outcome, (clock.now() - this.since) / 1000);
  }
}
