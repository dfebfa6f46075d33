import { isIP } from 'node:net';
import { z } from 'zod';
import type { FieldProblem } from '../errors/index.js';
import { duration, type ListenAddr } from './schema-helpers.js';

/**
 * `admin.oidc`: dashboard single sign-on with an OpenID Connect provider (authorization code +
 * PKCE). A user signs in when the provider vouches for them AND they are in `allowed_groups` /
 * `allowed_emails` (when either is set) AND a role names them; `admin` wins over `viewer`.
 */

/** The path the gateway answers the provider's redirect on. */
export const CALLBACK_PATH = '/auth/callback';

/** 127.0.0.0/8, ::1 and "localhost": addresses no other machine can reach. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h === '0:0:0:0:0:0:0:1';
  return false;
}

/** An absolute http(s) URL without credentials or a fragment; http only on a loopback host. */
const httpsUrl = (what: string) =>
  z.string().superRefine((s, ctx) => {
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      ctx.addIssue({ code: 'custom', message: `${JSON.stringify(s)} is not a URL` });
      return;
    }
    if (u.protocol !== 'https:' && !(u.protocol === 'http:' && isLoopbackHost(u.hostname))) {
      ctx.addIssue({
        code: 'custom',
        message: `the ${what} must be an https:// URL (plain http only on a loopback address such as 127.0.0.1)`,
      });
    }
    if (u.username || u.password || u.hash) {
      ctx.addIssue({ code: 'custom', message: `the ${what} may not carry credentials or a #fragment` });
    }
  });

const names = z.array(z.string().min(1).max(256)).max(1000).default([]);
const emails = z
  .array(
    z
      .string()
      .max(320)
      .regex(/^[^@\s]+@[^@\s]+$/, 'is not an email address'),
  )
  .max(1000)
  .default([]);

const who = z
  .strictObject({ groups: names, emails })
  .default({ groups: [], emails: [] })
  .transform((w) => ({ groups: w.groups, emails: w.emails.map((e) => e.toLowerCase()) }));

export const adminOidcSchema = z
  .strictObject({
    /** Issuer identifier; discovery reads `<issuer>/.well-known/openid-configuration`. */
    issuer: httpsUrl('issuer'),
    client_id: z.string().min(1).max(512),
    /** Without it the gateway is a public client (PKCE only, no client authentication). */
    client_secret: z.string().min(1).max(4096).optional(),
    token_endpoint_auth_method: z.enum(['client_secret_basic', 'client_secret_post', 'none']).optional(),
    /** Where the provider sends the browser back; its path must be /auth/callback. Default: derived from admin.listen when that is a loopback address. */
    redirect_uri: httpsUrl('redirect_uri')
      .refine((s) => URL.canParse(s) && new URL(s).pathname === CALLBACK_PATH, {
        message: "the redirect_uri's path must be /auth/callback", // CALLBACK_PATH
      })
      .optional(),
    scopes: z
      .array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'is not a scope name'))
      .max(50)
      .refine((s) => s.includes('openid'), { message: 'must include "openid"' })
      .default(['openid', 'email', 'profile']),
    /** The claim (ID token or userinfo) that lists the user's groups. */
    groups_claim: z.string().min(1).max(256).default('groups'),
    /** Match `emails` only when the provider says the address is verified (`email_verified: true`). */
    require_verified_email: z.boolean().default(true),
    /** Who may sign in at all (when either list is given); a role must name them too. */
    allowed_groups: names,
    allowed_emails: emails,
    roles: z.strictObject({ admin: who, viewer: who }),
    session: z
      .strictObject({
        /** A session unused this long ends. */
        idle_timeout: duration.default(30 * 60_000),
        /** A session ends this long after sign-in, used or not. */
        lifetime: duration.default(8 * 3_600_000),
        /** Dashboard sessions at once; sign-ins past it are refused (counted as `dashboard_sessions`). */
        max_sessions: z.number().int().min(1).max(100_000).default(1000),
        /** Sessions one user may hold; a new sign-in past it ends that user's oldest. */
        max_per_user: z.number().int().min(1).max(1000).default(10),
      })
      .default({ idle_timeout: 30 * 60_000, lifetime: 8 * 3_600_000, max_sessions: 1000, max_per_user: 10 }),
    /** How long a started sign-in may take at the provider. */
    login_timeout: duration.default(10 * 60_000),
  })
  .superRefine((o, ctx) => {
    const r = o.roles;
    if (
      r.admin.groups.length + r.admin.emails.length + r.viewer.groups.length + r.viewer.emails.length ===
      0
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['roles'],
        message: 'name at least one group or email in roles.admin or roles.viewer (nobody could sign in)',
      });
    }
    if (o.session.lifetime < 1000 || o.session.idle_timeout < 1000) {
      ctx.addIssue({
        code: 'custom',
        path: ['session'],
        message: 'lifetime and idle_timeout must be at least 1s',
      });
    }
    if (o.token_endpoint_auth_method && o.token_endpoint_auth_method !== 'none' && !o.client_secret) {
      ctx.addIssue({
        code: 'custom',
        path: ['client_secret'],
        message: `token_endpoint_auth_method ${o.token_endpoint_auth_method} needs a client_secret`,
      });
    }
  });

export type AdminOidcConfig = z.output<typeof adminOidcSchema>;

/**
 * Checks that need admin.listen too: without `redirect_uri` the admin listener must be on a
 * loopback address (the URI is derived from it); a plain-http redirect_uri (cookies without
 * `Secure`) only with a loopback admin listener.
 */
export function adminOidcProblems(admin: { listen: ListenAddr; oidc?: AdminOidcConfig }): FieldProblem[] {
  const o = admin.oidc;
  if (!o) return [];
  const loopback = isLoopbackHost(admin.listen.host);
  if (!o.redirect_uri) {
    return loopback
      ? []
      : [
          {
            path: 'admin.oidc.redirect_uri',
            message: `set redirect_uri (https://<the dashboard's public host>${CALLBACK_PATH}): it can only be derived when admin.listen is a loopback address`,
          },
        ];
  }
  if (new URL(o.redirect_uri).protocol === 'http:' && !loopback) {
    return [
      {
        path: 'admin.oidc.redirect_uri',
        message:
          'a plain http:// redirect_uri (session cookies without Secure) needs admin.listen on a loopback address; use https:// through a TLS proxy',
      },
    ];
  }
  return [];
}
