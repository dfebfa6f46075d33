import { z } from 'zod';
import type { RouteDoc } from './openapi.js';

/** The single sign-on routes (oidc-routes.ts), in the OpenAPI document when `admin.oidc` is on. */

const html = (description: string) => ({
  description,
  contentType: 'text/html; charset=utf-8',
  example: '<!doctype html>… <h1>Access refused</h1> … <code>SSO_NOT_ALLOWED</code> …',
});

/** A redirect: the body is empty, the Location header is the answer. */
const redirect = (description: string, to: string) => ({
  description,
  contentType: 'text/plain',
  example: `(Location: ${to})`,
});

const sessionAnswer = z.object({
  signed_in: z.boolean(),
  ended: z.boolean().optional().describe('the cookie named a session that is over'),
  user: z
    .object({
      subject: z.string(),
      email: z.string().nullable(),
      name: z.string().nullable(),
      role: z.enum(['admin', 'viewer']),
    })
    .optional(),
  csrf_token: z.string().optional().describe('send it as X-CSRF-Token with every change'),
  expires_at: z.string().optional(),
  sso: z.object({ login: z.string() }).nullable(),
});

export const ssoRouteDocs: RouteDoc[] = [
  {
    method: 'GET',
    path: '/auth/login',
    operationId: 'ssoLogin',
    summary: 'Start a single sign-on (redirect to the provider)',
    description:
      'Sets the sealed pending-sign-in cookie and redirects (303) to the OpenID Connect provider. `?again=1` asks the provider for its login form again.',
    auth: false,
    responses: {
      303: redirect('To the provider.', 'https://login.example.com/auth?client_id=…&code_challenge=…'),
      502: html('The provider cannot be reached (SSO_FAILED).'),
    },
  },
  {
    method: 'GET',
    path: '/auth/callback',
    operationId: 'ssoCallback',
    summary: "The provider's redirect back",
    description:
      'Checks state, nonce, PKCE and the ID token, decides the role, sets the session cookie and redirects to `/`; otherwise a page that says why (400 stale, 403 SSO_NOT_ALLOWED or SSO_FAILED, 502 SSO_FAILED, 503 SSO_SESSIONS_FULL).',
    auth: false,
    responses: {
      303: redirect('Signed in: to the dashboard.', '/'),
      403: html('Refused: the user is not allowed, or the answer failed verification.'),
    },
  },
  {
    method: 'GET',
    path: '/auth/session',
    operationId: 'ssoSession',
    summary: 'Who is signed in by single sign-on',
    auth: false,
    responses: {
      200: {
        description: 'Always 200.',
        schema: sessionAnswer,
        example: {
          signed_in: true,
          user: { subject: 'a1b2', email: 'alice@example.com', name: 'Alice', role: 'admin' },
          csrf_token: 'k3J…',
          expires_at: '2026-01-01T08:00:00.000Z',
          sso: { login: '/auth/login' },
        },
      },
    },
  },
  {
    method: 'POST',
    path: '/auth/logout',
    operationId: 'ssoLogout',
    summary: 'Sign out (ends the session on the gateway)',
    description: 'Needs the dashboard origin and X-CSRF-Token like every change with a session cookie.',
    auth: false,
    noBody: true,
    responses: { 204: { description: 'Signed out; the cookie is cleared.' } },
    errors: [403],
  },
];
