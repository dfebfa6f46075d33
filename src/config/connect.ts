/**
 * `connect.yaml`: the connector's configuration.
 *
 * The same pipeline as gateway.yaml (./load.ts): read (size-capped) → strict YAML (line/column
 * errors, duplicate keys named) → ${ENV} expansion → schema (unknown keys are errors) → every
 * repository URI parsed (./connect-repositories.ts) → one error listing every problem, or a
 * frozen ConnectConfig. Relative paths are relative to the file's directory.
 */
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { TENANT_ID } from '../core/ids.js';
import { errors, type FieldProblem } from '../errors/index.js';
import { parseRepositories, type RepositoryConfig } from './connect-repositories.js';
import {
  deepFreeze,
  expandTopLevel,
  parseHostPort,
  parseYamlStrict,
  readConfigText,
  zodProblems,
} from './load.js';
import { type ManagedPolicy, managedText, parseManagedPolicy } from './managed-policy.js';
import { duration, MAX_DRAIN_TIMEOUT } from './schema-helpers.js';
import { destinationOf } from './uri.js';
import { DEFAULT_MAX_WINDOW, windowSize } from './window-size.js';

export type { HealthCheckConfig, RepositoryConfig } from './connect-repositories.js';

export const DEFAULT_GATEWAY_PORT = 2222;
export const STATE_DIR_NAME = '.tether-connector';
/**
 * `drain_timeout` unless set: long enough for requests in flight to finish, short enough that
 * `docker stop` (10 s before it kills) sees the connector exit by itself.
 */
export const DEFAULT_DRAIN_TIMEOUT = 5_000;
const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}=?$/;

/** How the SSH session reaches the gateway: plain TCP, TLS, or a WebSocket over HTTPS. */
export type GatewayTransportKind = 'ssh' | 'tls' | 'wss';

interface ParsedGateway {
  host: string;
  port: number;
  kind: GatewayTransportKind;
  path: string;
}

const GATEWAY_FORMS = '"host:port", "tls://host:port" or "wss://host[:port]/path"';

function parseGatewayUrl(text: string): ParsedGateway | string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return `"${text}" is not a gateway address (use ${GATEWAY_FORMS})`;
  }
  const scheme = url.protocol.replace(/:$/, '').toLowerCase();
  if (scheme !== 'tls' && scheme !== 'wss') {
    const hint =
      scheme === 'ws'
        ? 'plain ws:// is not supported, use wss://'
        : scheme === 'https'
          ? 'for a WebSocket tunnel write wss://'
          : `use ${GATEWAY_FORMS}`;
    return `"${text}": unknown transport "${scheme}://" (${hint})`;
  }
  if (url.username || url.password) return `"${text}": a gateway address carries no user name or password`;
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') return `"${text}" names no host (use ${GATEWAY_FORMS})`;
  const port = url.port === '' ? 443 : Number(url.port);
  if (scheme === 'tls') {
    if ((url.pathname !== '' && url.pathname !== '/') || url.search || url.hash) {
      return `"${text}": a tls:// address has no path (use "tls://host:port")`;
    }
    return { host, port, kind: 'tls', path: '' };
  }
  if (url.hash) return `"${text}": a wss:// address has no #fragment`;
  return { host, port, kind: 'wss', path: `${url.pathname || '/'}${url.search}` };
}

const gatewayAddr = z.string().transform((s, ctx) => {
  const text = s.trim();
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    const u = parseGatewayUrl(text);
    if (typeof u === 'string') {
      ctx.addIssue({ code: 'custom', message: u });
      return z.NEVER;
    }
    return u;
  }
  const hp = /:\d+$/.test(text)
    ? parseHostPort(text, '')
    : { host: text.replace(/^\[(.*)\]$/, '$1'), port: DEFAULT_GATEWAY_PORT };
  if (!hp || hp.host === '' || /[\s/@]/.test(hp.host) || hp.port < 1) {
    ctx.addIssue({
      code: 'custom',
      message: `"${s}" is not a gateway address (use ${GATEWAY_FORMS}, e.g. "gateway.example.com:2222")`,
    });
    return z.NEVER;
  }
  return { ...hp, kind: 'ssh' as const, path: '' };
});

const METRICS_FORM = 'use "host:port", e.g. "127.0.0.1:9464"; port 0 picks a free one';

/**
 * `metrics_listen`: where the connector serves Prometheus metrics. "host:port" like the
 * gateway's listen addresses; ":port" means 127.0.0.1 (the endpoint is local unless you say so).
 */
const metricsListen = z.unknown().transform((v, ctx): { host: string; port: number } => {
  const text = typeof v === 'string' ? v.trim() : undefined;
  const m = text === undefined ? null : /^(?:\[([^\]]+)\]|([^:[\]\s/@]*)):(\d+)$/.exec(text);
  if (!m) {
    const shown = typeof v === 'string' ? `"${v}"` : JSON.stringify(v);
    ctx.addIssue({ code: 'custom', message: `${shown} is not a listen address (${METRICS_FORM})` });
    return z.NEVER;
  }
  const port = Number(m[3]);
  if (port > 65535) {
    ctx.addIssue({ code: 'custom', message: `port ${m[3]} is out of range (0-65535)` });
    return z.NEVER;
  }
  const host = m[1] ?? m[2] ?? '';
  return { host: host === '' ? '127.0.0.1' : host, port };
});

/** An HTTP proxy for the gateway connection (HTTP CONNECT). The password is never shown. */
export interface ProxySetting {
  host: string;
  port: number;
  username?: string;
  password?: string;
  /** Where it came from: "connect.yaml proxy", "HTTPS_PROXY", … */
  source: string;
}

/** "http://user:***@host:port" → never the password. */
export function redactProxyUrl(text: string): string {
  return text.replace(/\/\/([^/@:]*):[^/@]*@/, '//$1:***@');
}

/**
 * Parses a proxy URL ("http://[user:pass@]host[:port]"; no scheme means http://, no port 80).
 * Returns a message for the user when it is not one (never echoing the password).
 */
export function parseProxyUrl(text: string, source: string): ProxySetting | string {
  const raw = text.trim();
  const shown = redactProxyUrl(raw);
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    return `"${shown}" is not a proxy URL (use "http://[user:password@]host:port")`;
  }
  if (url.protocol !== 'http:') {
    return `"${shown}": only http:// proxies are supported (the connector sends HTTP CONNECT to them)`;
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') return `"${shown}" names no host`;
  if ((url.pathname !== '' && url.pathname !== '/') || url.search || url.hash) {
    return `"${shown}": a proxy URL has no path (use "http://host:port")`;
  }
  const decode = (v: string) => {
    try {
      return decodeURIComponent(v);
    } catch {
      return v;
    }
  };
  return {
    host,
    port: url.port === '' ? 80 : Number(url.port),
    ...(url.username ? { username: decode(url.username) } : {}),
    ...(url.password ? { password: decode(url.password) } : {}),
    source,
  };
}

/** How a proxy is shown: "http://host:port (user alice)". */
export function proxyText(p: ProxySetting): string {
  const hp = destinationOf(p);
  return `http://${hp}${p.username ? ` (user ${p.username})` : ''}`;
}

const proxyKey = z.unknown().transform((v, ctx): ProxySetting => {
  let parsed: ProxySetting | string;
  if (typeof v === 'string') {
    parsed = parseProxyUrl(v, 'connect.yaml proxy');
  } else if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    const unknown = Object.keys(o).filter((k) => !['url', 'username', 'password'].includes(k));
    const bad = ['url', 'username', 'password'].filter((k) => o[k] !== undefined && typeof o[k] !== 'string');
    if (unknown.length > 0 || bad.length > 0 || typeof o.url !== 'string') {
      parsed =
        unknown.length > 0
          ? `unknown key "${unknown[0]}" (use url, username, password)`
          : bad.length > 0
            ? `${bad[0]} must be a string`
            : 'needs url: "http://host:port"';
    } else {
      parsed = parseProxyUrl(o.url, 'connect.yaml proxy');
      if (typeof parsed !== 'string') {
        if (o.username !== undefined) parsed.username = o.username as string;
        if (o.password !== undefined) parsed.password = o.password as string;
      }
    }
  } else {
    parsed = 'use a URL "http://[user:password@]host:port", or { url, username, password }';
  }
  if (typeof parsed === 'string') {
    ctx.addIssue({ code: 'custom', message: parsed });
    return z.NEVER;
  }
  return parsed;
});

export const connectSchema = z.strictObject({
  gateway: gatewayAddr.optional(),
  /** The older name of `gateway`. */
  appliance: gatewayAddr.optional(),
  /** PEM file with the CA certificate(s) that signed the gateway's TLS certificate (tls://, wss://). */
  gateway_ca: z.string().min(1, 'is empty').optional(),
  /** Accept any TLS certificate from the gateway: for labs only, logged loudly. */
  insecure_skip_verify: z.boolean().default(false),
  /** HTTP proxy for the gateway connection: "http://[user:pass@]host:port" or { url, username, password }. */
  proxy: proxyKey.optional(),
  /** Tenant id = SSH user name. Filled in by `tether connector register`. */
  tenant: z
    .string()
    .regex(TENANT_ID, 'use 1-63 characters a-z, 0-9, "_" or "-", starting with a letter or digit')
    .optional(),
  ssh_key: z.string().min(1, 'is empty'),
  gateway_fingerprint: z
    .string()
    .regex(FINGERPRINT, 'use the SHA256 fingerprint the gateway prints, "SHA256:" and 43 base64 characters')
    .transform((s) => s.replace(/=$/, ''))
    .optional(),
  /** group → repository → URI; validated separately so messages can name both. */
  repositories: z.unknown().optional(),
  state_dir: z.string().min(1).optional(),
  keepalive_interval: duration.default(15_000),
  keepalive_count_max: z.number().int().min(1).max(100).default(3),
  /** Ceiling of each channel's adaptive receive window: bytes or "32MiB". */
  max_window: windowSize.default(DEFAULT_MAX_WINDOW),
  reconnect: z
    .strictObject({ min_delay: duration.default(500), max_delay: duration.default(30_000) })
    .default({ min_delay: 500, max_delay: 30_000 }),
  /** How long the connector waits for a destination to accept a connection. */
  dial_timeout: duration.default(10_000),
  /**
   * A stop (SIGTERM/SIGINT, `tether connector stop`): how long the connections it carries may
   * take to finish once its forwards are cancelled; what is still open then is cut. 0 = at once.
   */
  drain_timeout: duration
    .refine((ms) => ms <= MAX_DRAIN_TIMEOUT, {
      message: 'at most 1 hour (use e.g. "5s", "2m", or 0 to cut open connections at once)',
    })
    .default(DEFAULT_DRAIN_TIMEOUT),
  /** Health check for every repository without its own (see parseHealthCheck). */
  health_check: z.unknown().optional(),
  log_level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('info'),
  /** Serve Prometheus metrics on this "host:port" (off when absent). */
  metrics_listen: metricsListen.optional(),
  /** What the operator may add from the gateway; validated by parseManagedPolicy. */
  managed: z.unknown().optional(),
});

/** The shape a user writes (before validation). */
export type ConnectConfigInput = z.input<typeof connectSchema>;

/** How the connector reaches the gateway (the SSH inside is the same on every transport). */
export interface GatewayTransportConfig {
  kind: GatewayTransportKind;
  /** wss: the request path (and query), e.g. "/tunnel"; "" otherwise. */
  path: string;
  /** Absolute path of gateway_ca. */
  ca: string | undefined;
  insecureSkipVerify: boolean;
  /** The `proxy:` key. (HTTPS_PROXY and NO_PROXY are read when the connector starts.) */
  proxy: ProxySetting | undefined;
}

/** The validated, frozen configuration. */
export interface ConnectConfig {
  /** Absolute path of the file it came from. */
  file: string;
  gateway: { host: string; port: number };
  transport: GatewayTransportConfig;
  tenant: string | undefined;
  /** Absolute path of the private key. */
  sshKey: string;
  gatewayFingerprint: string | undefined;
  repositories: readonly RepositoryConfig[];
  /** Absolute: known_hosts, pid file, control socket, daemon log. */
  stateDir: string;
  keepaliveInterval: number;
  keepaliveCountMax: number;
  /** `max_window`: ceiling of each channel's adaptive receive window, bytes. */
  maxWindow: number;
  reconnect: { minDelay: number; maxDelay: number };
  dialTimeout: number;
  /** `drain_timeout`, ms: how long a stop lets carried connections finish. */
  drainTimeout: number;
  logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'silent';
  /** `metrics_listen`: where GET /metrics is served; undefined = no metrics endpoint. */
  metricsListen: { host: string; port: number } | undefined;
  /** `managed`: the customer's policy for repositories the operator adds; null = off. */
  managed?: ManagedPolicy | null;
}

/** "host:port", "tls://host:port" or "wss://host[:port]/path". */
export function gatewayText(
  g: { host: string; port: number },
  t?: Pick<GatewayTransportConfig, 'kind' | 'path'>,
): string {
  if (!t || t.kind === 'ssh') return destinationOf(g);
  if (t.kind === 'tls') return `tls://${destinationOf(g)}`;
  const host = g.host.includes(':') ? `[${g.host}]` : g.host;
  return `wss://${host}${g.port === 443 ? '' : `:${g.port}`}${t.path}`;
}

/** Reads, validates and freezes connect.yaml. */
export function loadConnectConfig(file: string, env: NodeJS.ProcessEnv = process.env): ConnectConfig {
  const abs = resolve(file);
  const text = readConfigText(abs, file, 'file not found (create one with "tether connector init")');
  return connectConfigFromText(text, abs, env);
}

/** Parses connect.yaml text; `file` names it in messages and anchors relative paths. */
export function connectConfigFromText(
  text: string,
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): ConnectConfig {
  const raw = parseYamlStrict(text, file, duplicateInConnect);
  return connectConfigFrom(raw, file, env);
}

/** A duplicate repository label is named as such; other keys as duplicate keys. */
function duplicateInConnect(path: readonly string[], key: string, line: number, first: number): string {
  return path.length === 2 && path[0] === 'repositories'
    ? `duplicate repository label ${path[1]}/${key} (line ${line}; first defined on line ${first})`
    : `duplicate key "${key}" (line ${line}; first defined on line ${first})`;
}

/** Validates an already parsed document. */
export function connectConfigFrom(
  raw: unknown,
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): ConnectConfig {
  const expanded = expandTopLevel(
    raw,
    file,
    env,
    'the top level must be a mapping of keys (gateway, ssh_key, repositories, …)',
  );
  const problems: FieldProblem[] = [];

  const parsed = connectSchema.safeParse(expanded);
  if (!parsed.success) problems.push(...zodProblems(parsed.error));
  const repositories = parseRepositories(expanded.repositories, problems, expanded.health_check);
  const managed = parseManagedPolicy(expanded.managed, problems);
  const cfg = parsed.success ? parsed.data : undefined;
  if (cfg) {
    if (cfg.gateway && cfg.appliance) {
      problems.push({
        path: 'appliance',
        message: '"appliance" is another name for "gateway": give only one of them',
      });
    } else if (!cfg.gateway && !cfg.appliance) {
      problems.push({
        path: 'gateway',
        message: 'is required (the gateway\'s SSH address, e.g. "gateway.example.com:2222")',
      });
    }
    const kind = (cfg.gateway ?? cfg.appliance)?.kind;
    if (kind === 'ssh') {
      for (const key of ['gateway_ca', 'insecure_skip_verify'] as const) {
        if (key === 'gateway_ca' ? cfg.gateway_ca !== undefined : cfg.insecure_skip_verify) {
          problems.push({ path: key, message: 'only applies to a tls:// or wss:// gateway' });
        }
      }
    } else if (cfg.gateway_ca !== undefined && cfg.insecure_skip_verify) {
      problems.push({
        path: 'insecure_skip_verify',
        message: 'turns certificate checks off, so gateway_ca would go unused: give only one of them',
      });
    }
    if (cfg.reconnect.min_delay <= 0 || cfg.reconnect.max_delay < cfg.reconnect.min_delay) {
      problems.push({ path: 'reconnect', message: 'needs 0 < min_delay <= max_delay' });
    }
  }
  if (problems.length > 0 || !cfg) throw errors.config(file, problems);

  const base = dirname(resolve(file));
  const stateDir = cfg.state_dir ?? env.TETHER_STATE_DIR ?? resolve(base, STATE_DIR_NAME);
  const gw = (cfg.gateway ?? cfg.appliance)!;
  return deepFreeze({
    file: resolve(file),
    gateway: { host: gw.host, port: gw.port },
    transport: {
      kind: gw.kind,
      path: gw.path,
      ca: cfg.gateway_ca === undefined ? undefined : resolve(base, cfg.gateway_ca),
      insecureSkipVerify: cfg.insecure_skip_verify,
      proxy: cfg.proxy,
    },
    tenant: cfg.tenant,
    sshKey: resolve(base, cfg.ssh_key),
    gatewayFingerprint: cfg.gateway_fingerprint,
    repositories,
    stateDir: resolve(base, stateDir),
    keepaliveInterval: cfg.keepalive_interval,
    keepaliveCountMax: cfg.keepalive_count_max,
    maxWindow: cfg.max_window,
    reconnect: { minDelay: cfg.reconnect.min_delay, maxDelay: cfg.reconnect.max_delay },
    dialTimeout: cfg.dial_timeout,
    drainTimeout: cfg.drain_timeout,
    logLevel: cfg.log_level,
    metricsListen: cfg.metrics_listen,
    managed,
  });
}

/** The configuration as the user should see it: effective values, nothing secret. */
export function redactedConfig(cfg: ConnectConfig): Record<string, unknown> {
  const groups: Record<string, Record<string, string>> = {};
  for (const r of cfg.repositories) {
    groups[r.group] ??= {};
    groups[r.group]![r.name] = r.uri.replace(/\?.*$/, '?[redacted]');
  }
  return {
    file: cfg.file,
    gateway: gatewayText(cfg.gateway, cfg.transport),
    ...(cfg.transport.ca ? { gateway_ca: cfg.transport.ca } : {}),
    ...(cfg.transport.insecureSkipVerify ? { insecure_skip_verify: true } : {}),
    ...(cfg.transport.proxy
      ? {
          proxy: {
            url: `http://${destinationOf(cfg.transport.proxy)}`,
            ...(cfg.transport.proxy.username ? { username: cfg.transport.proxy.username } : {}),
            ...(cfg.transport.proxy.password ? { password: '[redacted]' } : {}),
          },
        }
      : {}),
    tenant: cfg.tenant ?? null,
    ssh_key: cfg.sshKey,
    gateway_fingerprint: cfg.gatewayFingerprint ?? null,
    state_dir: cfg.stateDir,
    keepalive_interval: `${cfg.keepaliveInterval}ms`,
    keepalive_count_max: cfg.keepaliveCountMax,
    max_window: cfg.maxWindow,
    reconnect: { min_delay: `${cfg.reconnect.minDelay}ms`, max_delay: `${cfg.reconnect.maxDelay}ms` },
    dial_timeout: `${cfg.dialTimeout}ms`,
    drain_timeout: `${cfg.drainTimeout}ms`,
    log_level: cfg.logLevel,
    metrics_listen: cfg.metricsListen ? destinationOf(cfg.metricsListen) : null,
    managed: cfg.managed ? managedText(cfg.managed) : 'off',
    repositories: groups,
  };
}
