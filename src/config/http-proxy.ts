import { z } from 'zod';
import { isValidName, TENANT_ID } from '../core/ids.js';
import { proxyProtocolFields } from './proxy-protocol.js';
import { duration, httpUrl, listenAddr, tlsFiles } from './schema-helpers.js';

// The HTTP front door's configuration. Owned by src/frontdoor/http-proxy; docs/http-proxy.md
// describes every key.

/** Where a route sends its requests: a tenant's repository (through its connector) or a URL. */
export type RouteTarget =
  | { kind: 'tenant'; tenant: string; group: string; repo: string; label: string; text: string }
  | {
      kind: 'url';
      protocol: 'http:' | 'https:';
      hostname: string;
      port: number;
      host: string;
      basePath: string;
      text: string;
    };

const target = z.string().transform((s, ctx): RouteTarget => {
  const fail = (why: string) => {
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(s)}: ${why}` });
    return z.NEVER;
  };
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return fail('not a URL (use "tenant://<tenant>/<group>/<repo>" or "http://host:port")');
  }
  if (u.protocol === 'tenant:') {
    const m = /^tenant:\/\/([^/]+)\/([^/]+)\/([^/]+)\/?$/.exec(s);
    if (!m) return fail('use "tenant://<tenant>/<group>/<repo>"');
    const [, tenant, group, repo] = m as unknown as [string, string, string, string];
    if (!TENANT_ID.test(tenant)) return fail(`invalid tenant id "${tenant}"`);
    if (!isValidName(group)) return fail(`invalid group name "${group}"`);
    if (!isValidName(repo)) return fail(`invalid repository name "${repo}"`);
    return { kind: 'tenant', tenant, group, repo, label: `${group}/${repo}`, text: s };
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    return fail('the scheme must be tenant://, http:// or https://');
  }
  if (u.username || u.password) return fail('credentials do not belong in the URL; use upstream_auth');
  if (u.search || u.hash) return fail('a query or fragment is not allowed here');
  const port = u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
  const hostname = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  return {
    kind: 'url',
    protocol: u.protocol,
    hostname,
    port,
    host: u.host,
    basePath: u.pathname === '/' ? '' : u.pathname.replace(/\/+$/, ''),
    text: s,
  };
});

const hostPattern = z
  .string()
  .transform((s) => s.trim().toLowerCase())
  .refine((s) => /^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(s), {
    message: 'use a host name such as "registry.example.com" or "*.example.com" (no port, no scheme)',
  });

const pathPrefix = z
  .string()
  .refine((s) => s.startsWith('/'), { message: 'must start with "/"' })
  .refine((s) => !/(^|\/)\.\.?(\/|$)|\/\/|[?#\\]/.test(s), {
    message: 'must be a plain path ("/v2", "/api/")',
  });

const url = httpUrl;

/** A command to run: an argv array (no shell), or one string run with `/bin/sh -c`. */
const command = z
  .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
  .transform((c) => (typeof c === 'string' ? ['/bin/sh', '-c', c] : c));

const headerName = z
  .string()
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be an HTTP header name')
  .transform((s) => s.toLowerCase())
  .refine((s) => !['host', 'content-length', 'transfer-encoding', 'connection'].includes(s), {
    message: 'this header cannot carry a credential',
  });

export type SecretSource =
  | { kind: 'static'; value: string }
  | { kind: 'file'; path: string }
  | {
      kind: 'command';
      argv: string[];
      refresh: number;
      retries: number;
      retry_delay: number;
      timeout: number;
    };

export type UpstreamAuth =
  | { type: 'basic'; username: string; source: SecretSource }
  | { type: 'bearer'; source: SecretSource }
  | { type: 'header'; name: string; source: SecretSource };

const commandTiming = {
  /** How often the command is run again (ECR tokens live 12 h: refresh every 8 h). */
  refresh: duration.optional(),
  /** Extra attempts when a run fails, before keeping the last good value. */
  retries: z.number().int().min(0).max(20).optional(),
  retry_delay: duration.optional(),
  command_timeout: duration.optional(),
};

type Timing = { refresh?: number; retries?: number; retry_delay?: number; command_timeout?: number };

function secretFrom(
  o: Timing & { command?: string[] },
  valueKey: string,
  value: string | undefined,
  file: string | undefined,
  ctx: z.RefinementCtx,
): SecretSource {
  const given = [value !== undefined, file !== undefined, o.command !== undefined].filter(Boolean).length;
  if (given !== 1) {
    ctx.addIssue({
      code: 'custom',
      message: `give exactly one of ${valueKey}, ${valueKey}_file or command`,
    });
    return z.NEVER;
  }
  if (o.command === undefined) {
    for (const k of ['refresh', 'retries', 'retry_delay', 'command_timeout'] as const) {
      if (o[k] !== undefined)
        ctx.addIssue({ code: 'custom', path: [k], message: 'only applies with command' });
    }
  }
  if (value !== undefined) return { kind: 'static', value };
  if (file !== undefined) return { kind: 'file', path: file };
  return {
    kind: 'command',
    argv: o.command!,
    refresh: o.refresh ?? 8 * 3_600_000,
    retries: o.retries ?? 3,
    retry_delay: o.retry_delay ?? 5_000,
    timeout: o.command_timeout ?? 60_000,
  };
}

const upstreamAuth = z
  .discriminatedUnion('type', [
    z.strictObject({
      type: z.literal('basic'),
      username: z
        .string()
        .min(1)
        .refine((s) => !s.includes(':'), { message: 'must not contain ":"' }),
      password: z.string().min(1).optional(),
      password_file: z.string().min(1).optional(),
      command: command.optional(),
      ...commandTiming,
    }),
    z.strictObject({
      type: z.literal('bearer'),
      token: z.string().min(1).optional(),
      token_file: z.string().min(1).optional(),
      command: command.optional(),
      ...commandTiming,
    }),
    z.strictObject({
      type: z.literal('header'),
      name: headerName,
      value: z.string().min(1).optional(),
      value_file: z.string().min(1).optional(),
      command: command.optional(),
      ...commandTiming,
    }),
  ])
  .transform((o, ctx): UpstreamAuth => {
    switch (o.type) {
      case 'basic':
        return {
          type: 'basic',
          username: o.username,
          source: secretFrom(o, 'password', o.password, o.password_file, ctx),
        };
      case 'bearer':
        return { type: 'bearer', source: secretFrom(o, 'token', o.token, o.token_file, ctx) };
      default:
        return { type: 'header', name: o.name, source: secretFrom(o, 'value', o.value, o.value_file, ctx) };
    }
  });

const verifyStatic = z.strictObject({
  type: z.literal('static'),
  /** Lines "name:scrypt$N$r$p$salt$hash[:scope,scope]"; reloaded when it changes. */
  file: z.string().min(1),
});

const verifyRemote = z.strictObject({
  type: z.literal('remote'),
  /** Called with the caller's token; 2xx means valid. */
  url,
  method: z.enum(['GET', 'POST']).default('GET'),
  /** How the token is sent: "Authorization: Bearer <token>" or Basic with the caller's username. */
  send: z.enum(['bearer', 'basic']).default('bearer'),
  timeout: duration.default(5_000),
  /** Dotted path into the JSON answer that lists what the caller may access (arrays are walked). */
  scope_field: z.string().min(1).optional(),
  /** Extra request headers (e.g. an API version). */
  headers: z
    .record(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be an HTTP header name'), z.string())
    .optional(),
});

export type VerifyConfig = z.output<typeof verifyStatic> | z.output<typeof verifyRemote>;

const auth = z
  .strictObject({
    type: z.enum(['basic-token', 'bearer', 'group-key', 'none']),
    verify: z.discriminatedUnion('type', [verifyStatic, verifyRemote]).optional(),
    /** How long a valid answer is remembered. */
    cache_ttl: duration.default(60_000),
    /** How long an invalid answer is remembered. */
    failure_ttl: duration.default(5_000),
    /** The realm in WWW-Authenticate. */
    realm: z
      .string()
      .min(1)
      .refine((s) => !/["\\\r\n]/.test(s), { message: 'must not contain quotes, backslashes or line breaks' })
      .optional(),
  })
  .superRefine((a, ctx) => {
    const needs = a.type === 'basic-token' || a.type === 'bearer';
    if (needs && !a.verify) {
      ctx.addIssue({
        code: 'custom',
        path: ['verify'],
        message: `is required for ${a.type} (type: static or remote)`,
      });
    }
    if (!needs && a.verify) {
      ctx.addIssue({ code: 'custom', path: ['verify'], message: `does not apply to ${a.type}` });
    }
  });

export type RouteAuthConfig = z.output<typeof auth>;

const route = z
  .strictObject({
    /** Shown in logs and metrics; defaults to "<host><path_prefix>". */
    name: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,63}$/, 'use 1-63 characters A-Z, a-z, 0-9, ".", "_" or "-"')
      .optional(),
    host: hostPattern.optional(),
    path_prefix: pathPrefix.default('/'),
    /** Remove path_prefix before forwarding. */
    strip_prefix: z.boolean().default(false),
    to: target,
    auth,
    read_only: z.boolean().default(false),
    upstream_auth: upstreamAuth.optional(),
    docker_registry: z.boolean().default(false),
    /** Send the caller's Host header upstream instead of the upstream's own. */
    preserve_host: z.boolean().default(false),
    /** PEM file of the CA(s) that signed an https:// upstream's certificate (default: the system's). */
    upstream_ca: z.string().min(1).optional(),
  })
  .superRefine((r, ctx) => {
    if (r.upstream_ca !== undefined && !(r.to.kind === 'url' && r.to.protocol === 'https:')) {
      ctx.addIssue({ code: 'custom', path: ['upstream_ca'], message: 'only applies to an https:// target' });
    }
    if (r.auth.type === 'group-key' && r.to.kind !== 'tenant') {
      ctx.addIssue({ code: 'custom', path: ['auth', 'type'], message: 'group-key needs a tenant:// target' });
    }
  });

export type HttpProxyRouteConfig = z.output<typeof route>;

export const httpProxySchema = z
  .strictObject({
    listen: listenAddr.default({ host: '127.0.0.1', port: 8443 }),
    /** PROXY protocol (behind a TCP load balancer). */
    ...proxyProtocolFields,
    tls: tlsFiles.optional(),
    /** Request header blocks larger than this get 431. */
    max_header_bytes: z.number().int().min(1024).max(1_048_576).default(16_384),
    /** A client must send its request head within this time. */
    header_timeout: duration.default(10_000),
    /** A connection with no bytes either way for this long is closed (transfers never are). */
    idle_timeout: duration.default(300_000),
    /** Time to reach the upstream (or open the tunnel channel). */
    connect_timeout: duration.default(10_000),
    /** Time from the end of the request body to the upstream's response head. */
    response_timeout: duration.default(60_000),
    /** Wrong credentials per source address (within failure_window) before 429s start. */
    max_failures: z.number().int().min(1).default(20),
    failure_window: duration.default(60_000),
    routes: z.array(route).min(1, 'add at least one route'),
  })
  .superRefine((c, ctx) => {
    const seen = new Map<string, number>();
    c.routes.forEach((r, i) => {
      const k = `${r.host ?? '*'} ${r.path_prefix}`;
      const prev = seen.get(k);
      if (prev !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['routes', i],
          message: `same host and path_prefix as routes[${prev}]`,
        });
      }
      seen.set(k, i);
    });
    const names = new Map<string, number>();
    c.routes.forEach((r, i) => {
      if (!r.name) return;
      const prev = names.get(r.name);
      if (prev !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['routes', i, 'name'],
          message: `same name as routes[${prev}]`,
        });
      }
      names.set(r.name, i);
    });
  });
export type HttpProxyConfig = z.output<typeof httpProxySchema>;
