/**
 * The options of `tether peer run`, through the same pipeline as gateway.yaml and connect.yaml
 * (./load.ts): strict keys (an unknown one is an error) → ${VAR} expansion in every value →
 * zod schema → defaults → every problem collected → frozen typed config. The source is the
 * command line, so a key is named as its flag (`--tunnel-bind`). The certificate files are
 * only named here; the peer (src/peer/options.ts) reads them.
 */
import { z } from 'zod';
import { type FieldProblem, TetherError } from '../errors/index.js';
import type { LogLevel } from '../log/index.js';
import { type HostPort, parseHostPort } from './host-port.js';
import { expandTopLevel, zodProblems } from './load.js';
import {
  DEFAULT_HTTP_BIND,
  DEFAULT_PEER_DRAIN_TIMEOUT,
  DEFAULT_TUNNEL_BIND,
  LOG_LEVELS,
} from './peer-defaults.js';
import { duration, MAX_DRAIN_TIMEOUT } from './schema-helpers.js';

/** What `tether peer run` was given, unvalidated (strings as typed). */
export interface PeerOptionsInput {
  tunnelBind?: string;
  httpBind?: string;
  logLevel?: string;
  drainTimeout?: string;
  rootCertPath?: string;
  serverCertPath?: string;
  serverKeyPath?: string;
}

/** Each option's flag: how messages name it. */
export const PEER_FLAGS = {
  tunnelBind: '--tunnel-bind',
  httpBind: '--http-bind',
  logLevel: '--log-level',
  drainTimeout: '--drain-timeout',
  rootCertPath: '--root-cert-path',
  serverCertPath: '--server-cert-path',
  serverKeyPath: '--server-key-path',
} as const satisfies Record<keyof PeerOptionsInput, string>;

/** A listen address: "host:port", "[v6]:port", or ":port" for every interface (host ""); port 0 = any. */
const bind = z.string().transform((text, ctx): HostPort => {
  const r = parseHostPort(text, { defaultHost: '', allowPortZero: true });
  if (r.ok) return r.value;
  ctx.addIssue({ code: 'custom', message: r.problem });
  return z.NEVER;
});

const logLevel = z.string().transform((text, ctx): LogLevel => {
  const l = text.toLowerCase();
  if ((LOG_LEVELS as readonly string[]).includes(l)) return l as LogLevel;
  ctx.addIssue({ code: 'custom', message: `"${text}" is not one of ${LOG_LEVELS.join(', ')}` });
  return z.NEVER;
});

/** A duration; on a command line a bare number ("0", "30") is seconds, as in the YAML files. */
const drainTimeout = z.preprocess(
  (v) => (typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : v),
  duration.refine((ms) => ms <= MAX_DRAIN_TIMEOUT, {
    message: 'must be at most 1 hour (use e.g. "5s", "2m", or 0 to cut open connections at once)',
  }),
);

/** A file path; an empty one counts as not given. */
const path = z
  .string()
  .optional()
  .transform((p) => (p === '' ? undefined : p));

const CERT_KEYS = ['rootCertPath', 'serverCertPath', 'serverKeyPath'] as const;

export const peerSchema = z
  .strictObject({
    tunnelBind: bind.prefault(DEFAULT_TUNNEL_BIND),
    httpBind: bind.prefault(DEFAULT_HTTP_BIND),
    logLevel: logLevel.prefault('info'),
    /** SIGTERM/SIGINT: how long carried connections may finish once nothing new is taken; 0 = cut at once. */
    drainTimeout: drainTimeout.prefault(DEFAULT_PEER_DRAIN_TIMEOUT),
    rootCertPath: path,
    serverCertPath: path,
    serverKeyPath: path,
  })
  .superRefine((o, ctx) => {
    const missing = CERT_KEYS.filter((k) => o[k] === undefined);
    if (missing.length === 0 || missing.length === CERT_KEYS.length) return;
    ctx.addIssue({
      code: 'custom',
      path: [missing[0]!],
      message: `--root-cert-path, --server-cert-path and --server-key-path go together (all three for mTLS, or none): missing ${missing.map((k) => PEER_FLAGS[k]).join(', ')}`,
    });
  });

/** Validated, frozen peer options; the certificate files are named, not read yet. */
export interface PeerConfig {
  readonly tunnelBind: HostPort;
  readonly httpBind: HostPort;
  readonly logLevel: LogLevel;
  /** ms a stop lets carried connections finish (`--drain-timeout`). */
  readonly drainTimeout: number;
  /** Present when all three certificate flags were given. */
  readonly tls?: {
    readonly rootCertPath: string;
    readonly serverCertPath: string;
    readonly serverKeyPath: string;
  };
}

/**
 * The peer's error for bad options: every problem, each led by its flag (`--tunnel-bind "x" has
 * no port`); a problem that is a sentence of its own (the certificate rule) stands alone.
 */
export function peerOptionsError(problems: FieldProblem[]): TetherError {
  const text = problems
    .map((p) => (p.path === '' || p.message.startsWith('--') ? p.message : `${p.path} ${p.message}`))
    .join('; ');
  return new TetherError('PEER_OPTIONS_INVALID', text, { status: 400, details: problems });
}

/** A problem's key as its flag (an unknown key keeps its own name), in the words of a command line. */
function asFlag(p: FieldProblem): FieldProblem {
  const flag = (PEER_FLAGS as Record<string, string>)[p.path] ?? p.path;
  if (p.message === 'unknown key') return { path: flag, message: 'is not an option of tether peer run' };
  const several = /^unknown keys (.+)$/.exec(p.message);
  if (several) return { path: '', message: `${several[1]} are not options of tether peer run` };
  const unset = /^environment variable (\S+) is not set$/.exec(p.message);
  if (unset) return { path: flag, message: `uses \${${unset[1]}}, which is not set` };
  return { path: flag, message: p.message };
}

/** Checks a log level before anything else is built (the logger needs it first). */
export function parseLogLevel(level: string | undefined): LogLevel {
  const r = logLevel.safeParse(level ?? 'info');
  if (!r.success)
    throw peerOptionsError(zodProblems(r.error).map((p) => ({ ...p, path: PEER_FLAGS.logLevel })));
  return r.data;
}

/** Flags → env → schema → defaults → every problem in one error → frozen config. */
export function peerConfigFrom(input: PeerOptionsInput, env: NodeJS.ProcessEnv = process.env): PeerConfig {
  // Keys commander left undefined are absent, not unknown.
  const given = Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined));
  let expanded: Record<string, unknown>;
  try {
    expanded = expandTopLevel(given, 'tether peer run', env);
  } catch (e) {
    throw peerOptionsError(((e as TetherError).details ?? []).map(asFlag));
  }
  const r = peerSchema.safeParse(expanded);
  if (!r.success) throw peerOptionsError(zodProblems(r.error).map(asFlag));
  const { rootCertPath, serverCertPath, serverKeyPath, ...rest } = r.data;
  const tls =
    rootCertPath && serverCertPath && serverKeyPath
      ? Object.freeze({ rootCertPath, serverCertPath, serverKeyPath })
      : undefined;
  return Object.freeze({
    tunnelBind: Object.freeze(rest.tunnelBind),
    httpBind: Object.freeze(rest.httpBind),
    logLevel: rest.logLevel,
    drainTimeout: rest.drainTimeout,
    ...(tls ? { tls } : {}),
  });
}
