import { z } from 'zod';
import {
  addTenantResponse,
  errorBody,
  forwardView,
  repositoryView,
  sessionView,
  tenantView,
} from './schemas.js';

/**
 * The admin API's OpenAPI 3.1 document, generated from the route table in server.ts: each
 * route carries the zod schema that validates its request body and the schemas of its answers,
 * with an example of each. A route without them cannot be documented, and `openApiDocument`
 * refuses it (the test suite builds the document from the real table).
 */

export type HttpMethod = 'GET' | 'POST' | 'PATCH' | 'DELETE';

export interface RouteResponseDoc {
  description: string;
  /** JSON body schema; absent only for 204 and for non-JSON answers (`contentType`). */
  schema?: z.ZodType;
  /** Non-JSON answer, e.g. Prometheus text. */
  contentType?: string;
  example?: unknown;
}

export interface RouteDoc {
  method: HttpMethod;
  /** OpenAPI path template, e.g. `/v1/tenants/{id}`; `{name}` matches one path segment. */
  path: string;
  operationId: string;
  summary: string;
  description?: string;
  /** false: answered without the admin token. Default true. */
  auth?: boolean;
  /** Schema that validates the request body (required for POST and PATCH routes). */
  body?: z.ZodType;
  /** A POST that takes no body (says so on purpose). */
  noBody?: true;
  /** The body may be left out entirely. */
  bodyOptional?: boolean;
  bodyExample?: unknown;
  /** Successful answers by status. Error answers (400/401/404/…) are added from `errors`. */
  responses: Record<number, RouteResponseDoc>;
  /** Query parameters (all optional strings), with what each means. */
  query?: Record<string, string>;
  /** Error statuses this route can answer besides 401 (added for every route needing the token). */
  errors?: number[];
}

/** Routes answered outside the route table (the dashboard's event stream), documented here. */
export const extraRouteDocs: RouteDoc[] = [
  {
    method: 'POST',
    path: '/v1/events/session',
    operationId: 'openEventSession',
    summary: 'Sign in to the live event stream',
    description:
      'Exchanges the admin token for an HttpOnly cookie scoped to /v1/events (the browser dashboard uses it; EventSource cannot send headers).',
    noBody: true,
    responses: { 204: { description: 'Signed in; the answer sets the `tether_events` cookie.' } },
  },
  {
    method: 'DELETE',
    path: '/v1/events/session',
    operationId: 'closeEventSession',
    summary: 'Sign out of the live event stream',
    responses: { 204: { description: 'Signed out; the cookie is cleared.' } },
  },
  {
    method: 'GET',
    path: '/v1/events',
    operationId: 'streamEvents',
    summary: 'Live events (Server-Sent Events)',
    description:
      'Needs the cookie from POST /v1/events/session instead of the bearer token. Streams tenant, session, forward and throughput events as `text/event-stream`.',
    auth: false,
    responses: {
      200: {
        description: 'An event stream.',
        contentType: 'text/event-stream',
        example: 'event: hello\ndata: {}\n\n',
      },
    },
    errors: [401],
  },
];

const ERROR_TEXT: Record<number, [string, string, string]> = {
  400: [
    'Bad request: an invalid body, id or path.',
    'BAD_REQUEST',
    'invalid request body: quota: must be a whole number from 0 to 3000',
  ],
  401: ['Missing or wrong admin token.', 'UNAUTHORIZED', 'missing or wrong admin token'],
  403: ['Refused.', 'TENANT_DISABLED', 'tenant "acme" is disabled (quota 0)'],
  404: ['No such tenant (or group).', 'TENANT_NOT_FOUND', 'tenant "acme" does not exist'],
  409: [
    'Conflict.',
    'TENANT_EXISTS',
    'tenant "acme" already exists (use -f / "force": true to replace its keys)',
  ],
  413: ['Request body over 64 KiB.', 'BODY_TOO_LARGE', 'request body over 65536 bytes'],
};

/** Shared schemas, named in components.schemas so answers refer to them. */
const NAMED: Array<[string, z.ZodType]> = [
  ['Error', errorBody],
  ['Tenant', tenantView],
  ['Session', sessionView],
  ['Forward', forwardView],
  ['Repository', repositoryView],
  ['AddTenantResult', addTenantResponse],
];

const pascal = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

/** Checks a route can be documented; returns what is missing (empty when complete). */
export function routeProblems(r: RouteDoc): string[] {
  const where = `${r.method} ${r.path}`;
  const out: string[] = [];
  if (!r.summary) out.push(`${where}: no summary`);
  if ((r.method === 'POST' || r.method === 'PATCH') && !r.body && !r.noBody)
    out.push(`${where}: no request body schema`);
  if (r.body && r.bodyExample === undefined && !r.bodyOptional) out.push(`${where}: no request body example`);
  const statuses = Object.keys(r.responses);
  if (statuses.length === 0) out.push(`${where}: no responses`);
  for (const s of statuses) {
    const resp = r.responses[Number(s)]!;
    if (s === '204') continue;
    if (!resp.schema && !resp.contentType) out.push(`${where}: response ${s} has no schema`);
    if (resp.example === undefined) out.push(`${where}: response ${s} has no example`);
  }
  return out;
}

/** Builds the OpenAPI 3.1 document; throws when a route lacks a schema or an example. */
export function openApiDocument(routes: readonly RouteDoc[], version: string): Record<string, unknown> {
  const problems = routes.flatMap(routeProblems);
  if (problems.length > 0) throw new Error(`admin routes not documented: ${problems.join('; ')}`);

  const registry = z.registry<{ id: string }>();
  const ref = (schema: z.ZodType, fallbackId: string) => {
    const id = registry.get(schema)?.id ?? fallbackId;
    if (!registry.has(schema)) registry.add(schema, { id });
    return { $ref: `#/components/schemas/${id}` };
  };
  for (const [id, s] of NAMED) registry.add(s, { id });

  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const params = [...r.path.matchAll(/\{([^}]+)\}/g)].map((m) => ({
      name: m[1],
      in: 'path',
      required: true,
      schema: { type: 'string' },
      example: m[1] === 'group' ? 'docs' : 'acme',
    }));
    const queryParams = Object.entries(r.query ?? {}).map(([name, description]) => ({
      name,
      in: 'query',
      required: false,
      description,
      schema: { type: 'string' },
    }));
    const responses: Record<string, unknown> = {};
    for (const [status, resp] of Object.entries(r.responses)) {
      if (resp.contentType) {
        responses[status] = {
          description: resp.description,
          content: { [resp.contentType]: { schema: { type: 'string' }, example: resp.example } },
        };
      } else if (resp.schema) {
        responses[status] = {
          description: resp.description,
          content: {
            'application/json': {
              schema: ref(resp.schema, `${pascal(r.operationId)}Response`),
              example: resp.example,
            },
          },
        };
      } else responses[status] = { description: resp.description };
    }
    const errorStatuses = new Set(r.errors ?? []);
    if (r.auth !== false) errorStatuses.add(401);
    for (const s of [...errorStatuses].sort()) {
      const [description, code, message] = ERROR_TEXT[s] ?? ['Error.', 'ERROR', 'error'];
      responses[String(s)] = {
        description,
        content: {
          'application/json': {
            schema: { $ref: '#/components/schemas/Error' },
            example: { error: { code, message } },
          },
        },
      };
    }
    const op: Record<string, unknown> = {
      operationId: r.operationId,
      summary: r.summary,
      ...(r.description ? { description: r.description } : {}),
      tags: [
        r.path.startsWith('/v1/tenants') ? 'tenants' : r.path.startsWith('/v1/events') ? 'events' : 'gateway',
      ],
      ...(params.length + queryParams.length > 0 ? { parameters: [...params, ...queryParams] } : {}),
      ...(r.auth === false ? { security: [] } : {}),
      responses,
    };
    if (r.body) {
      op.requestBody = {
        required: !r.bodyOptional,
        content: {
          'application/json': {
            schema: ref(r.body, `${pascal(r.operationId)}Request`),
            ...(r.bodyExample === undefined ? {} : { example: r.bodyExample }),
          },
        },
      };
    }
    paths[r.path] ??= {};
    paths[r.path]![r.method.toLowerCase()] = op;
  }

  const generated = z.toJSONSchema(registry, {
    io: 'input',
    unrepresentable: 'any',
    uri: (id) => `#/components/schemas/${id}`,
  }).schemas;
  const schemas: Record<string, unknown> = {};
  for (const [id, s] of Object.entries(generated)) {
    const { $schema: _s, $id: _i, ...rest } = s as Record<string, unknown>;
    schemas[id] = rest;
  }

  return {
    openapi: '3.1.0',
    info: {
      title: 'Tether admin API',
      version,
      description:
        'Manage tenants, keys, quotas, enrollments and group keys of a Tether gateway. JSON in and out; every route except /health and /v1/openapi.json needs `Authorization: Bearer <admin token>` (the token is in `<data_dir>/admin.token`).',
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    servers: [{ url: 'http://127.0.0.1:7070', description: 'the default admin.listen' }],
    security: [{ adminToken: [] }],
    tags: [
      { name: 'tenants', description: 'Tenants, their keys, quotas, repositories and group keys.' },
      { name: 'gateway', description: 'Health, metrics and this document.' },
      { name: 'events', description: 'The live event stream behind the dashboard.' },
    ],
    paths,
    components: {
      securitySchemes: {
        adminToken: { type: 'http', scheme: 'bearer', description: 'The content of <data_dir>/admin.token.' },
      },
      schemas,
    },
  };
}

/** Examples for every route (the test suite parses each with its route's schema). */
const forwardExample = {
  label: 'docs/share',
  port: 2200,
  state: 'online' as const,
  service: 'smb',
  scheme: null,
  destination: 'samba.corp.example:445',
  path: null,
  connections: 1,
  allow_from: null,
  connectors: 1,
  node: null,
};
const tenantExample = {
  id: 'acme',
  quota: 20,
  in_use: 1,
  created_at: '2026-01-05T10:00:00.000Z',
  updated_at: '2026-01-05T10:00:00.000Z',
  keys: [
    {
      fingerprint: 'SHA256:3x6Rk2y7bqvXc5v1M0p9Zt0c8mUQxq7h2gF5sBf1y0E',
      created_at: '2026-01-05T10:00:00.000Z',
    },
  ],
  sessions: [
    {
      id: 's-7f3a9c',
      source: '203.0.113.7:51012',
      since: '2026-01-05T10:01:00.000Z',
      fingerprint: 'SHA256:3x6Rk2y7bqvXc5v1M0p9Zt0c8mUQxq7h2gF5sBf1y0E',
      agent: 'SSH-2.0-tether-connector/0.1.0',
    },
  ],
  forwards: [forwardExample],
  allow_from: ['203.0.113.0/24', '2001:db8::/32'],
  tunnel_from: null,
};
const publicKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH7m1p0kq6ySxvX9o1R3bq4Zr3iD3c0c5YVb8xJ0sQ2a acme';

export const examples = {
  health: { status: 'ok', version: '0.1.0', node: null },
  metrics:
    '# HELP tether_sessions Live connector sessions\n# TYPE tether_sessions gauge\ntether_sessions 1\n',
  tenant: { tenant: tenantExample },
  tenantList: { tenants: [tenantExample] },
  addTenant: { id: 'acme', quota: 20 },
  addTenantResult: {
    tenant: { ...tenantExample, in_use: 0, sessions: [], forwards: [] },
    created: true,
    fingerprint: 'SHA256:3x6Rk2y7bqvXc5v1M0p9Zt0c8mUQxq7h2gF5sBf1y0E',
    public_key: publicKey,
    private_key: '-----BEGIN OPENSSH PRIVATE KEY-----\n…\n-----END OPENSSH PRIVATE KEY-----\n',
  },
  changeTenant: { quota: 5, allow_from: ['203.0.113.0/24', '2001:db8::/32'] },
  addKey: { public_key: publicKey },
  addKeyResult: { fingerprint: 'SHA256:3x6Rk2y7bqvXc5v1M0p9Zt0c8mUQxq7h2gF5sBf1y0E' },
  enrollment: { ttl_hours: 24 },
  enrollmentResult: { token: 'tq3JmT0d7…', expires_at: '2026-01-06T10:00:00.000Z' },
  repositories: {
    tenant: 'acme',
    groups: [
      {
        group: 'docs',
        key: 'n6Wm1Qd9yF0…',
        key_created_at: '2026-01-05T10:01:00.000Z',
        repositories: [{ ...forwardExample, repository: 'share', address: 'share.docs.acme' }],
      },
    ],
    ungrouped: [],
  },
  groupKey: {
    tenant: 'acme',
    group: 'docs',
    key: 'Zp4cX2s8uT1…',
    key_created_at: '2026-01-06T09:00:00.000Z',
  },
};
