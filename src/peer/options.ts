import { TetherError } from '../errors/index.js';
import type { LogLevel } from '../log/index.js';
import { loadTlsMaterial, type TlsMaterial } from '../tunnel/tls-material.js';
import { type HostPort, parseHostPort } from './address.js';
import { DEFAULT_HTTP_BIND, DEFAULT_TUNNEL_BIND, LOG_LEVELS } from './defaults.js';

/** What `tether peer run` was given, unvalidated (strings as typed). */
export interface PeerOptionsInput {
  tunnelBind?: string;
  httpBind?: string;
  logLevel?: string;
  rootCertPath?: string;
  serverCertPath?: string;
  serverKeyPath?: string;
}

/** Validated, frozen daemon options. An empty host means "every interface". */
export interface PeerOptions {
  readonly tunnelBind: HostPort;
  readonly httpBind: HostPort;
  readonly logLevel: LogLevel;
  /** Present when all three certificate flags were given. */
  readonly tls?: TlsMaterial;
}

export { DEFAULT_HTTP_BIND, DEFAULT_TUNNEL_BIND, LOG_LEVELS };

function usage(message: string): TetherError {
  return new TetherError('PEER_OPTIONS_INVALID', message, { status: 400 });
}

/** Checks a log level before anything else is built (the logger needs it first). */
export function parseLogLevel(level: string | undefined): LogLevel {
  const l = (level ?? 'info').toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(l)) {
    throw usage(`--log-level "${level}" is not one of ${LOG_LEVELS.join(', ')}`);
  }
  return l as LogLevel;
}

function bind(flag: string, text: string): HostPort {
  const r = parseHostPort(text, { defaultHost: '', allowPortZero: true });
  if (!r.ok) throw usage(`${flag} ${r.problem}`);
  return r.value;
}

const CERT_FLAGS = [
  ['rootCertPath', '--root-cert-path'],
  ['serverCertPath', '--server-cert-path'],
  ['serverKeyPath', '--server-key-path'],
] as const;

/** Validates flags and loads the certificates: every problem here is a clear startup error. */
export async function resolvePeerOptions(input: PeerOptionsInput): Promise<PeerOptions> {
  const logLevel = parseLogLevel(input.logLevel);
  const tunnelBind = bind('--tunnel-bind', input.tunnelBind ?? DEFAULT_TUNNEL_BIND);
  const httpBind = bind('--http-bind', input.httpBind ?? DEFAULT_HTTP_BIND);
  const given = CERT_FLAGS.filter(([k]) => input[k] !== undefined && input[k] !== '');
  let tls: TlsMaterial | undefined;
  if (given.length > 0 && given.length < CERT_FLAGS.length) {
    const missing = CERT_FLAGS.filter(([k]) => !given.some(([g]) => g === k)).map(([, f]) => f);
    throw usage(
      `--root-cert-path, --server-cert-path and --server-key-path go together (all three for mTLS, or none): missing ${missing.join(', ')}`,
    );
  }
  if (given.length === CERT_FLAGS.length) {
    tls = await loadTlsMaterial({
      rootCertPath: input.rootCertPath!,
      serverCertPath: input.serverCertPath!,
      serverKeyPath: input.serverKeyPath!,
    });
  }
  return Object.freeze({ tunnelBind, httpBind, logLevel, ...(tls ? { tls } : {}) });
}
