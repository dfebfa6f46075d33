import type { Readable } from 'node:stream';
import ssh2, { type Client } from 'ssh2';
import {
  COMPATIBLE_ALGORITHMS,
  type SshAlgorithmLists,
  toSsh2Algorithms,
} from '../../config/ssh-algorithms.js';
import { type ErrorCode, isTetherError, TetherError } from '../../errors/index.js';
import type { Logger } from '../../log/index.js';
import { fingerprintMatches, fingerprintsOf, type HostKeyFingerprints } from './fingerprint.js';
import type { OpenedStream, Origin, TargetRoute } from './realms/types.js';

/** A logged-in SSH connection to a target. */
export interface TargetConnection {
  client: Client;
  /** The fingerprints of the host key the target presented. */
  hostKey: HostKeyFingerprints;
  /** Ends the connection; `bytesIn`/`bytesOut` are the payload bytes relayed each way. */
  close(bytesIn: number, bytesOut: number): void;
}

export interface ConnectOptions {
  origin: Origin;
  timeoutMs: number;
  keepaliveInterval: number;
  keepaliveCountMax: number;
  ident: string;
  /** Offered to the target; default: ssh2's broad lists, hardened choices first. */
  algorithms?: SshAlgorithmLists;
  log: Logger;
}

const fail = (code: ErrorCode, message: string, cause?: unknown) =>
  new TetherError(code, message, { status: 502, cause });

/**
 * Opens the route's stream, speaks SSH over it, checks the target's host key against the
 * route's fingerprint (inside the key exchange: on a mismatch the proxy sends the target no
 * login, no user name, nothing), then logs in with the route's user and password or key.
 * Every failure is a TetherError whose message is safe to show the user.
 */
export async function connectTarget(route: TargetRoute, opts: ConnectOptions): Promise<TargetConnection> {
  if (!route.hostFingerprint && !route.insecureSkipHostKeyCheck) {
    throw fail(
      'TARGET_HOST_KEY_UNKNOWN',
      `target ${route.name} has no host key fingerprint configured, so the gateway refuses to connect (an operator sets host_fingerprint, or insecure_skip_host_key_check: true)`,
    );
  }
  const deadline = Date.now() + opts.timeoutMs;
  let opened: OpenedStream;
  try {
    opened = await route.dial(opts.origin, opts.timeoutMs);
  } catch (err) {
    if (isTetherError(err, 'SOURCE_NOT_ALLOWED')) throw err;
    const why = isTetherError(err) ? err.message : 'connection failed';
    throw fail('TARGET_UNREACHABLE', `cannot reach target ${route.name}: ${why}`, err);
  }

  const client = new ssh2.Client();
  let presented: HostKeyFingerprints | undefined;
  let hostKeyRejected = false;
  let loggedIn = false;

  try {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error & { level?: string }) => {
        client.removeListener('ready', onReady);
        reject(err);
      };
      const onReady = () => {
        client.removeListener('error', onError);
        resolve();
      };
      client.once('ready', onReady);
      client.once('error', onError);
      client.once('close', () => reject(new Error('connection closed')));
      client.connect({
        sock: opened.stream as Readable,
        username: route.user,
        password: route.password,
        privateKey: route.privateKey,
        tryKeyboard: false,
        readyTimeout: Math.max(1, deadline - Date.now()),
        keepaliveInterval: opts.keepaliveInterval,
        keepaliveCountMax: opts.keepaliveCountMax,
        ident: opts.ident,
        algorithms: toSsh2Algorithms(opts.algorithms ?? COMPATIBLE_ALGORITHMS),
        hostVerifier: (key: Buffer) => {
          presented = fingerprintsOf(key);
          if (route.hostFingerprint) {
            if (fingerprintMatches(route.hostFingerprint, key)) return true;
            hostKeyRejected = true;
            return false;
          }
          return route.insecureSkipHostKeyCheck;
        },
      });
    });
    loggedIn = true;
  } catch (err) {
    client.removeAllListeners('error');
    client.on('error', () => {});
    client.end();
    opened.stream.destroy();
    opened.close(0, 0);
    if (hostKeyRejected) {
      opts.log.warn(
        {
          event: 'ssh_proxy.target.host_key_mismatch',
          target: route.name,
          address: route.address,
          expected: route.hostFingerprint,
          presented,
        },
        'target host key does not match its configured fingerprint; nothing was sent',
      );
      throw fail(
        'TARGET_HOST_KEY_MISMATCH',
        `the host key of target ${route.name} does not match its configured fingerprint (it presented ${presented?.sha256 ?? 'an unknown key'}); the gateway sent it nothing and closed the connection`,
        err,
      );
    }
    const e = err as Error & { level?: string };
    opts.log.info(
      {
        event: 'ssh_proxy.target.failed',
        target: route.name,
        address: route.address,
        level: e.level,
        err: e.message,
      },
      'could not log in to the target',
    );
    if (e.level === 'client-authentication') {
      throw fail(
        'TARGET_LOGIN_FAILED',
        `the gateway could not log in to target ${route.name} as ${route.user} (the target refused the configured credentials)`,
        err,
      );
    }
    if (e.level === 'client-timeout' || /timed out/i.test(e.message)) {
      throw fail('TARGET_TIMEOUT', `target ${route.name} did not complete the SSH handshake in time`, err);
    }
    throw fail(
      'TARGET_UNREACHABLE',
      `cannot reach target ${route.name}: the SSH handshake failed (${presented ? 'after the key exchange' : 'is an SSH server listening there?'})`,
      err,
    );
  }

  let closed = false;
  return {
    client,
    hostKey: presented!,
    close: (bytesIn, bytesOut) => {
      if (closed) return;
      closed = true;
      if (loggedIn) client.end();
      opened.stream.destroy();
      opened.close(bytesIn, bytesOut);
    },
  };
}
