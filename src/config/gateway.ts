import { resolve } from 'node:path';
import { z } from 'zod';
import { errors } from '../errors/index.js';
import { parseAuditTarget } from '../log/audit.js';
import { accessProxySchema } from './access-proxy.js';
import { adminOidcProblems, adminOidcSchema } from './admin-oidc.js';
import { httpProxySchema } from './http-proxy.js';
import { deepFreeze, expandTopLevel, readYamlFile, validate } from './load.js';
import { proxyHeaderSchema, proxyProtocolFields, proxyProtocolProblems } from './proxy-protocol.js';
import { duration, listenAddr, MAX_DRAIN_TIMEOUT, portRange, tlsFiles } from './schema-helpers.js';
import { algorithmsSchema, copyAlgorithms, DEFAULT_ALGORITHMS } from './ssh-algorithms.js';
import { sshProxySchema } from './ssh-proxy.js';
import { DEFAULT_MAX_WINDOW, windowSize } from './window-size.js';

const storeSpec = z.string().refine((s) => s === 'sqlite' || /^postgres(ql)?:\/\//.test(s), {
  message: 'use "sqlite" or a "postgres://user@host/db" URL',
});

/** Most worker processes a gateway may run (`workers`). */
export const MAX_WORKERS = 64;

const WORKERS_HINT = `use a whole number from 1 to ${MAX_WORKERS}, or "auto" (one per CPU)`;

export { MAX_DRAIN_TIMEOUT };

export const gatewaySchema = z.strictObject({
  data_dir: z.string().min(1).default('./.tether'),
  store: storeSpec.default('sqlite'),
  /**
   * SIGTERM/SIGINT: how long open forwarded connections may take to finish after the gateway
   * stopped accepting (from the signal); what is still open then is cut. 0 = cut at once.
   */
  drain_timeout: duration
    .refine((ms) => ms <= MAX_DRAIN_TIMEOUT, {
      message: 'at most 1 hour (use e.g. "30s", "5m", or 0 to cut open connections at once)',
    })
    .default(30_000),
  /**
   * Processes that carry SSH sessions and front doors (a primary owns the store, the admin API
   * and the lease ports); 1 runs everything in one process, "auto" one per CPU.
   */
  workers: z
    .preprocess(
      // "${WORKERS}" expands to a string: a whole number in it counts as that number
      (v) => (typeof v === 'string' && /^[0-9]+$/.test(v) ? Number(v) : v),
      z.union([z.literal('auto'), z.number().int().min(1, WORKERS_HINT).max(MAX_WORKERS, WORKERS_HINT)], {
        message: WORKERS_HINT,
      }),
    )
    .default(1),
  /**
   * With workers: who accepts a new connection. "primary": the primary accepts it and passes the
   * socket to a worker listening on that port, in turn (an even spread; a message exchange per
   * connection; the sockets on their way are bounded per listener). "os": every worker listening
   * on a lease port or a front door accepts from it itself and the kernel picks one (less CPU per
   * connection); connector logins are still passed to the workers in turn by the primary
   * (src/gateway/workers/spread-listeners.ts).
   */
  worker_accept: z
    .enum(['primary', 'os'], { message: 'use "primary" (the default) or "os"' })
    .default('primary'),
  tunnel: z
    .strictObject({
      listen: listenAddr.default({ host: '127.0.0.1', port: 2222 }),
      /** PROXY protocol on the plain SSH port (behind a TCP load balancer). */
      ...proxyProtocolFields,
      tls: z.strictObject({ listen: listenAddr, ...tlsFiles.shape }).optional(),
      websocket: z
        .strictObject({
          listen: listenAddr,
          path: z.string().startsWith('/').default('/tunnel'),
          ...tlsFiles.shape,
        })
        .optional(),
      /** Keepalive interval; a session is dead after `keepalive_count_max` missed answers. */
      keepalive_interval: duration.default(15_000),
      keepalive_count_max: z.number().int().min(1).default(3),
      /** Ceiling of each channel's adaptive receive window: bytes or "32MiB" (see windowSize). */
      max_window: windowSize.default(DEFAULT_MAX_WINDOW),
      /** Unauthenticated connections must finish the handshake and auth within this time. */
      auth_timeout: duration.default(10_000),
      max_unauthenticated: z.number().int().min(1).default(256),
      /** Of those, how many one source address may hold (so one address cannot lock out the rest). */
      max_unauthenticated_per_source: z.number().int().min(1).default(16),
      /** Session channels one logged-in connection may have open at once (a connector needs one). */
      max_session_channels: z.number().int().min(1).max(1000).default(4),
      /** `tcpip-forward`/`cancel-tcpip-forward` requests per session: sustained rate and burst. */
      forward_requests: z
        .strictObject({
          per_second: z.number().positive().default(50),
          burst: z.number().int().min(1).default(500),
        })
        .default({ per_second: 50, burst: 500 }),
      /** Failed logins per source address: `max_failures` within `window` → refused for `block_for`. */
      login_throttle: z
        .strictObject({
          max_failures: z.number().int().min(1).default(20),
          window: duration.default(60_000),
          block_for: duration.default(5 * 60_000),
        })
        .default({ max_failures: 20, window: 60_000, block_for: 5 * 60_000 }),
      host_key: z.string().optional(),
      /** SSH algorithms offered on the tunnel port (and its TLS/WebSocket transports). */
      algorithms: algorithmsSchema(),
    })
    .default({
      algorithms: copyAlgorithms(DEFAULT_ALGORITHMS),
      listen: { host: '127.0.0.1', port: 2222 },
      keepalive_interval: 15_000,
      keepalive_count_max: 3,
      max_window: DEFAULT_MAX_WINDOW,
      auth_timeout: 10_000,
      max_unauthenticated: 256,
      max_unauthenticated_per_source: 16,
      max_session_channels: 4,
      forward_requests: { per_second: 50, burst: 500 },
      login_throttle: { max_failures: 20, window: 60_000, block_for: 5 * 60_000 },
      proxy_protocol: 'off',
      trusted_proxies: [],
    }),
  admin: z
    .strictObject({
      listen: listenAddr.default({ host: '127.0.0.1', port: 7070 }),
      token_file: z.string().optional(),
      /** Dashboard single sign-on (see admin-oidc.ts); off when absent. */
      oidc: adminOidcSchema.optional(),
    })
    .default({ listen: { host: '127.0.0.1', port: 7070 } }),
  forwards: z
    .strictObject({
      bind: z.string().min(1).default('127.0.0.1'),
      ports: portRange.default({ low: 2200, high: 5199 }),
      default_quota: z.number().int().min(0).max(3000).default(20),
      /** Leases of repositories nobody forwarded for this long are released. */
      lease_ttl: duration.default(30 * 86_400_000),
      /** Leases that never carried a connection (nor stayed up this long) are released this long after their last use. */
      unused_lease_ttl: duration.default(3_600_000),
      /** Leases a tenant may hold beyond its quota; past quota + margin its idle leases are released. */
      lease_margin: z.number().int().min(0).max(3000).default(5),
      /** Managed repositories (proposals to a tenant's connectors) one tenant may have. */
      max_managed: z.number().int().min(0).max(10_000).default(200),
      /** PROXY protocol on the raw lease ports. */
      ...proxyProtocolFields,
    })
    .default({
      bind: '127.0.0.1',
      ports: { low: 2200, high: 5199 },
      default_quota: 20,
      lease_ttl: 30 * 86_400_000,
      unused_lease_ttl: 3_600_000,
      lease_margin: 5,
      max_managed: 200,
      proxy_protocol: 'off',
      trusted_proxies: [],
    }),
  /** Bounds of reading a PROXY protocol header, on every listener that takes one. */
  proxy_header: proxyHeaderSchema,
  access_proxy: accessProxySchema.optional(),
  http_proxy: httpProxySchema.optional(),
  ssh_proxy: sshProxySchema.optional(),
  cluster: z
    .strictObject({
      node_id: z
        .string()
        .regex(/^[a-zA-Z0-9_.-]{1,63}$/, 'use 1-63 characters a-z, A-Z, 0-9, ".", "_" or "-"'),
      advertise: z.string().min(1),
      heartbeat: duration.default(2_000),
      dead_after: duration.default(6_000),
    })
    .optional(),
  log: z
    .strictObject({
      level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('info'),
      /** Audit log target: stdout, stderr, file:/path, syslog://host[:port], syslog+tcp://host[:port]. */
      audit: z
        .string()
        .superRefine((v, ctx) => {
          const t = parseAuditTarget(v);
          if (typeof t === 'string') ctx.addIssue({ code: 'custom', message: t });
        })
        .optional(),
    })
    .default({ level: 'info' }),
  /** One record per forwarded connection, kept in the store (`tether tenants audit`). */
  audit: z
    .strictObject({
      /** How long connection records are kept; 0 keeps none. */
      retention: duration.default(30 * 86_400_000),
    })
    .default({ retention: 30 * 86_400_000 }),
});

export type GatewayConfigInput = z.input<typeof gatewaySchema>;
export type GatewayConfig = Readonly<z.output<typeof gatewaySchema>>;

/**
 * load(file, env) → defaults → validate → frozen typed config. With no file, the embedded
 * defaults (TETHER_DATA_DIR overrides data_dir).
 */
export function loadGatewayConfig(
  file: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): GatewayConfig {
  const raw = file === undefined ? {} : readYamlFile(file);
  return gatewayConfigFrom(raw, file ?? '(defaults)', env);
}

export function gatewayConfigFrom(
  raw: unknown,
  source: string,
  env: NodeJS.ProcessEnv = process.env,
): GatewayConfig {
  const expanded = expandTopLevel(raw, source, env);
  if (expanded.data_dir === undefined && env.TETHER_DATA_DIR) expanded.data_dir = env.TETHER_DATA_DIR;
  const cfg = validate(gatewaySchema, expanded, source);
  const pp = proxyProtocolProblems({
    tunnel: cfg.tunnel,
    forwards: cfg.forwards,
    access_proxy: cfg.access_proxy,
    http_proxy: cfg.http_proxy,
    ssh_proxy: cfg.ssh_proxy,
  });
  if (pp.length > 0) throw errors.config(source, pp);
  if (cfg.cluster && cfg.store === 'sqlite') {
    throw errors.config(source, [
      { path: 'cluster', message: 'a cluster needs a postgres store (store: postgres://…)' },
    ]);
  }
  const oidcProblems = adminOidcProblems(cfg.admin);
  if (oidcProblems.length > 0) throw errors.config(source, oidcProblems);
  return deepFreeze({ ...cfg, data_dir: resolve(cfg.data_dir) });
}
