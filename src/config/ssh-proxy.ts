import { z } from 'zod';
import { proxyProtocolFields } from './proxy-protocol.js';
import { duration, httpUrl, listenAddr } from './schema-helpers.js';
import { algorithmsSchema, COMPATIBLE_ALGORITHMS, DEFAULT_ALGORITHMS } from './ssh-algorithms.js';

// The SSH front door's configuration. Owned by src/frontdoor/ssh-proxy; docs/ssh-proxy.md
// describes every key.

/** A realm name: the part of the SSH username before the colon. */
export const SSH_REALM_NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/;
/** A target name: between the colon and the slash (a static name, an app id, `<repo>.<group>.<tenant>`). */
export const SSH_TARGET_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;
/** The highest target index a username may name. */
export const SSH_MAX_INDEX = 9999;

/**
 * A host key fingerprint as `ssh-keygen -l` prints it: `SHA256:<43 base64 chars>` (the default),
 * `MD5:aa:bb:…` (`-E md5`), or the bare colon-separated MD5 hex of older tools.
 */
export const SSH_FINGERPRINT = /^(SHA256:[A-Za-z0-9+/]{43}=?|(MD5:)?[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){15})$/;

const fingerprint = z
  .string()
  .transform((s) => s.trim())
  .refine((s) => SSH_FINGERPRINT.test(s), {
    message: 'use a fingerprint as `ssh-keygen -l -f <key>` prints it: "SHA256:…" or "MD5:aa:bb:…"',
  });

/** A record whose keys must match `re` (zod's own key check only says "Invalid key in record"). */
function keyed<T extends z.ZodType>(re: RegExp, rule: string, value: T) {
  return z.record(z.string(), value).superRefine((rec, ctx) => {
    for (const k of Object.keys(rec)) {
      if (!re.test(k)) ctx.addIssue({ code: 'custom', path: [k], message: rule });
    }
  });
}

/** How the proxy logs in to a target and what the route allows. Shared by every realm. */
const loginFields = {
  /** The user the proxy logs in as on the target. */
  user: z.string().min(1).max(256),
  password: z.string().min(1).optional(),
  /** An OpenSSH or PEM private key, inline (a YAML block or `${ENV_VAR}`). */
  private_key: z.string().min(1).optional(),
  /** A file holding the private key, read at start. */
  private_key_file: z.string().min(1).optional(),
  host_fingerprint: fingerprint.optional(),
  /** Connect without checking the target's host key. Only for labs; the proxy warns at start. */
  insecure_skip_host_key_check: z.boolean().default(false),
  /** Relay `direct-tcpip` channels (`ssh -L`) to this target. */
  allow_port_forwarding: z.boolean().default(false),
};

type LoginShape = { password?: string; private_key?: string; private_key_file?: string };

const oneKey = (r: LoginShape) => !(r.private_key !== undefined && r.private_key_file !== undefined);
const ONE_KEY = { message: 'give private_key or private_key_file, not both' };
const someCredential = (r: LoginShape) =>
  r.password !== undefined || r.private_key !== undefined || r.private_key_file !== undefined;
const SOME_CREDENTIAL = {
  message: 'give password, private_key or private_key_file for the login to the target',
};

/** One target entry: where it is and how to log in. */
export const sshTargetSchema = z
  .strictObject({
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535).default(22),
    ...loginFields,
  })
  .refine(oneKey, ONE_KEY)
  .refine(someCredential, SOME_CREDENTIAL);

/** `name: [entry for index 0, entry for index 1, …]` */
const targetTable = keyed(
  SSH_TARGET_NAME,
  'use 1-200 characters A-Z, a-z, 0-9, ".", "_" or "-", starting with a letter or digit',
  z
    .array(sshTargetSchema)
    .min(1)
    .max(SSH_MAX_INDEX + 1),
);

const accessCheckUrl = z.string().refine(
  (s) => {
    try {
      const u = new URL(s.replaceAll('{target}', 't').replaceAll('{index}', '0'));
      return (u.protocol === 'http:' || u.protocol === 'https:') && s.includes('{target}');
    } catch {
      return false;
    }
  },
  { message: 'must be an http:// or https:// URL template containing {target} (and usually {index})' },
);

/** `static`: one shared credential; targets from this config. */
const staticRealm = z.strictObject({
  type: z.literal('static'),
  /** The shared password every user of this realm gives (compared in constant time). */
  credential: z.string().min(1),
  targets: targetTable,
});

/** `oauth`: the password is a one-time authorization code; an access check URL decides. */
const oauthRealm = z.strictObject({
  type: z.literal('oauth'),
  token_url: httpUrl,
  client_id: z.string().min(1),
  client_secret: z.string().min(1),
  /** How the client authenticates at the token endpoint: HTTP Basic (RFC 6749 §2.3.1) or form fields. */
  client_auth: z.enum(['basic', 'body']).default('basic'),
  redirect_uri: z.string().min(1).optional(),
  /** GET with `Authorization: Bearer <token>`; `{target}` and `{index}` are filled in. */
  access_check_url: accessCheckUrl,
  /** Each HTTP call (token exchange, access check) must answer within this time. */
  timeout: duration.default(5_000),
  /** Routes for targets whose access check answer carries none. */
  targets: targetTable.default({}),
});

const tenantTarget = z
  .strictObject({
    user: loginFields.user.optional(),
    password: loginFields.password,
    private_key: loginFields.private_key,
    private_key_file: loginFields.private_key_file,
    host_fingerprint: fingerprint.optional(),
    insecure_skip_host_key_check: z.boolean().optional(),
    allow_port_forwarding: z.boolean().optional(),
  })
  .refine(oneKey, ONE_KEY);

/** `tenant`: target `<repo>.<group>.<tenant>` is an `ssh` repository; the password is its group key. */
const tenantRealm = z
  .strictObject({
    type: z.literal('tenant'),
    user: loginFields.user.optional(),
    password: loginFields.password,
    private_key: loginFields.private_key,
    private_key_file: loginFields.private_key_file,
    insecure_skip_host_key_check: loginFields.insecure_skip_host_key_check,
    allow_port_forwarding: loginFields.allow_port_forwarding,
    /** Per repository (`<repo>.<group>.<tenant>`): host fingerprint and login overrides. */
    targets: keyed(
      /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[a-z0-9_-]+$/,
      'use <repo>.<group>.<tenant>',
      tenantTarget,
    ).default({}),
  })
  .refine(oneKey, ONE_KEY);

export const sshRealmSchema = z.discriminatedUnion('type', [staticRealm, oauthRealm, tenantRealm]);

export const sshProxySchema = z.strictObject({
  listen: listenAddr.default({ host: '127.0.0.1', port: 2022 }),
  /** PROXY protocol (behind a TCP load balancer). */
  ...proxyProtocolFields,
  /** The proxy's own host key; default `<data_dir>/ssh_proxy_host_key`, generated on first start. */
  host_key: z.string().min(1).optional(),
  /** A connection must finish logging in (including reaching the target) within this time. */
  handshake_timeout: duration.default(60_000),
  /** A logged-in connection that moves no byte for this long is closed; 0 turns it off. */
  idle_timeout: duration.default(30 * 60_000),
  /** Reaching and logging in to the target must finish within this time. */
  connect_timeout: duration.default(10_000),
  keepalive_interval: duration.default(15_000),
  keepalive_count_max: z.number().int().min(1).default(3),
  /** Failed password attempts one connection may make before it is closed. */
  max_auth_tries: z.number().int().min(1).max(100).default(3),
  max_unauthenticated: z.number().int().min(1).default(64),
  /** SSH algorithms the front door's listener offers to callers (hardened defaults). */
  algorithms: algorithmsSchema(DEFAULT_ALGORITHMS),
  /** SSH algorithms the front door offers real sshd targets (broader defaults: targets may be old). */
  target_algorithms: algorithmsSchema(COMPATIBLE_ALGORITHMS),
  /** Of those, how many one source address may hold (so one address cannot lock out the rest). */
  max_unauthenticated_per_source: z.number().int().min(1).default(16),
  /** Failed logins per source address: `max_failures` within `window` → refused for `block_for`. */
  login_throttle: z
    .strictObject({
      max_failures: z.number().int().min(1).default(5),
      window: duration.default(15 * 60_000),
      block_for: duration.default(15 * 60_000),
    })
    .default({ max_failures: 5, window: 15 * 60_000, block_for: 15 * 60_000 }),
  realms: keyed(
    SSH_REALM_NAME,
    'realm names use 1-32 characters a-z, 0-9, "_" or "-"',
    sshRealmSchema,
  ).refine((r) => Object.keys(r).length > 0, {
    message: 'enable at least one realm (type static, oauth or tenant)',
  }),
});

export type SshProxyConfig = z.output<typeof sshProxySchema>;
export type SshRealmConfig = z.output<typeof sshRealmSchema>;
export type SshTargetConfig = z.output<typeof sshTargetSchema>;
