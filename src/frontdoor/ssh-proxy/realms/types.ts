import type { Duplex } from 'node:stream';
import type { ErrorCode } from '../../../errors/index.js';
import type { Logger } from '../../../log/index.js';

/** Where a user's connection comes from. */
export interface Origin {
  address: string;
  port: number;
}

/** How the proxy logs in to a target, and what the route allows. */
export interface TargetLogin {
  user: string;
  password?: string;
  /** Private key text (OpenSSH or PEM), already read and checked. */
  privateKey?: string;
  /** `SHA256:…` or `MD5:…`; without it the proxy refuses unless `insecureSkipHostKeyCheck`. */
  hostFingerprint?: string;
  insecureSkipHostKeyCheck: boolean;
  /** Relay `direct-tcpip` channels (`ssh -L`). */
  allowPortForwarding: boolean;
}

/** A byte stream to a target's sshd. */
export interface OpenedStream {
  stream: Duplex;
  /** Called once when the stream is done, with the payload bytes relayed each way. */
  close(bytesIn: number, bytesOut: number): void;
}

/** A target a realm let the user reach. */
export interface TargetRoute extends TargetLogin {
  /** `realm:target/index`: how messages and logs name the target. */
  name: string;
  /** Where the target's sshd is (`host:port`, or the tunnel label); for logs only, never shown to the user. */
  address: string;
  /** Opens the byte stream to the target's sshd within `timeoutMs`. */
  dial(origin: Origin, timeoutMs: number): Promise<OpenedStream>;
}

/** One password (or authorization code, or group key) presented for `realm:target/index`. */
export interface LoginAttempt {
  realm: string;
  target: string;
  index: number;
  secret: string;
  source: Origin;
}

/**
 * Why a login was refused. `message` is shown to the user (no secrets, no internal addresses).
 * `final`: retrying on this connection cannot help, so the proxy disconnects at once.
 * `countsAsFailure`: the source address's failed-login throttle counts it (wrong credentials
 * and denials do; an identity provider that is down does not).
 */
export interface LoginRefusal {
  ok: false;
  code: ErrorCode;
  message: string;
  final: boolean;
  countsAsFailure: boolean;
}

/** `tenant`: whose repository the route reaches (the tenant realm), for the audit log. */
export type LoginDecision =
  | { ok: true; route: TargetRoute; principal?: string; tenant?: string }
  | LoginRefusal;

export interface Realm {
  readonly name: string;
  readonly type: 'static' | 'oauth' | 'tenant';
  /** The keyboard-interactive prompt for the secret. */
  readonly prompt: string;
  /**
   * Checks what the username grammar cannot (e.g. `<repo>.<group>.<tenant>`). Runs before any
   * secret is asked for; returns the reason when the target can never be valid in this realm.
   */
  checkTarget?(target: string, index: number): string | undefined;
  /** Checks the secret and finds the route; `log` is the connection's logger. */
  login(attempt: LoginAttempt, log?: Logger): Promise<LoginDecision>;
}

export const refuse = (
  code: ErrorCode,
  message: string,
  opts: { final: boolean; countsAsFailure: boolean },
): LoginRefusal => ({
  ok: false,
  code,
  message,
  ...opts,
});
