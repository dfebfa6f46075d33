import { timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { z } from 'zod';
import { zodProblems } from '../config/load.js';
import type { TenantEvents } from '../core/events.js';
import type { ForwardRegistry } from '../core/forward-registry.js';
import type { GroupKeyService } from '../core/group-keys.js';
import { assertTenantId, isValidName, parseLabel } from '../core/ids.js';
import {
  type LimitsPatch,
  parseMaxConnections,
  parseRate,
  parseTraffic,
  type TrafficLimits,
} from '../core/limits.js';
import type { TenantService } from '../core/tenants.js';
import { errors, isTetherError, TetherError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import type { Store } from '../store/types.js';
import type { SourceAllowlists } from '../tunnel/source-allowlists.js';
import { allowlistPatch } from './allowlists.js';
import { examples as ex, extraRouteDocs, openApiDocument, type RouteDoc } from './openapi.js';
import {
  addKeyBody,
  addKeyResponse,
  addTenantBody,
  addTenantResponse,
  type ChangeTenantBody,
  changeTenantBody,
  enrollmentBody,
  enrollmentResponse,
  groupKeyResponse,
  healthResponse,
  repositoriesResponse,
  tenantListResponse,
  tenantResponse,
} from './schemas.js';
import { tenantViews } from './views.js';

export interface AdminDeps {
  token: string;
  store: Store;
  tenants: TenantService;
  groupKeys: GroupKeyService;
  registry: ForwardRegistry;
  /** Traffic limits; without them, PATCH accepts only the quota. */
  limits?: TrafficLimits;
  /** Source-address allowlists; without them, `allow_from`/`tunnel_from` are refused. */
  allowlists?: Pick<SourceAllowlists, 'change' | 'view'>;
  /** Tells other cluster members that a tenant's limits changed. */
  events?: TenantEvents;
  log: Logger;
  nodeId: string | null;
  version: string;
  /** Prometheus text for GET /metrics. */
  metrics?: () => Promise<{ contentType: string; body: string }>;
  /** Extra routes (dashboard, events) tried before the 404. */
  extra?: (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => Promise<boolean>;
}

const MAX_BODY = 64 * 1024;

type Handler = (ctx: {
  req: http.IncomingMessage;
  params: string[];
  body: () => Promise<unknown>;
}) => Promise<[number, unknown]>;

/** A non-JSON answer (Prometheus text, the OpenAPI document as served). */
class RawAnswer {
  constructor(
    readonly contentType: string,
    readonly body: string,
  ) {}
}

/** One admin route: its documentation (schemas, examples; see openapi.ts) and its handler. */
export interface Route extends RouteDoc {
  handler: Handler;
}

/** The limit fields of a PATCH body as a change (already validated by the schema). */
function limitsPatch(b: ChangeTenantBody): LimitsPatch {
  const p: LimitsPatch = {};
  if (b.balance !== undefined) p.balance = b.balance;
  if (b.bandwidth !== undefined) p.bandwidthUp = p.bandwidthDown = parseRate(b.bandwidth, 'bandwidth');
  if (b.bandwidth_up !== undefined) p.bandwidthUp = parseRate(b.bandwidth_up, 'bandwidth_up');
  if (b.bandwidth_down !== undefined) p.bandwidthDown = parseRate(b.bandwidth_down, 'bandwidth_down');
  if (b.max_connections !== undefined) p.maxConnections = parseMaxConnections(b.max_connections);
  if (b.traffic !== undefined) {
    const t = parseTraffic(b.traffic);
    p.trafficLimit = t?.limit ?? null;
    p.trafficPeriod = t?.period ?? null;
  }
  return p;
}

/** `/v1/tenants/{id}` → /^\/v1\/tenants\/([^/]+)$/ */
function pathPattern(template: string): RegExp {
  const parts = template.split(/\{[^}]+\}/).map((p) => p.replace(/[.*+?^$()|[\]\\/]/g, '\\$&'));
  return new RegExp(`^${parts.join('([^/]+)')}$`);
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`${text}\n`);
}

/**
 * Reads a JSON body of at most MAX_BODY bytes. A larger one is read to its end and thrown
 * away (only token holders get here; requestTimeout bounds it), so the client gets the 413
 * instead of a reset connection.
 */
function readBody(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) chunks.length = 0;
      else chunks.push(c);
    });
    req.on('end', () => {
      if (size > MAX_BODY) {
        reject(new TetherError('BODY_TOO_LARGE', `request body over ${MAX_BODY} bytes`, { status: 413 }));
        return;
      }
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') return resolve(undefined);
      try {
        resolve(JSON.parse(text));
      } catch {
        reject(errors.badRequest('request body is not valid JSON'));
      }
    });
    req.on('error', reject);
  });
}

export function parseBody<S extends z.ZodType>(schema: S, raw: unknown): z.output<S> {
  const r = schema.safeParse(raw);
  if (!r.success) {
    const details = zodProblems(r.error);
    throw errors.badRequest(
      `invalid request body: ${details.map((d) => (d.path ? `${d.path}: ${d.message}` : d.message)).join('; ')}`,
      details,
    );
  }
  return r.data;
}

function tokenMatches(expected: string, header: string | undefined): boolean {
  if (!header?.startsWith('Bearer ')) return false;
  const a = Buffer.from(header.slice(7).trim());
  const b = Buffer.from(expected);
  if (a.length !== b.length) {
    timingSafeEqual(b, b);
    return false;
  }
  return timingSafeEqual(a, b);
}

/** The admin HTTP API: JSON, bearer token. */
export class AdminServer {
  private readonly server: http.Server;
  private readonly routes: Array<Route & { pattern: RegExp }>;

  constructor(private readonly deps: AdminDeps) {
    this.routes = this.buildRoutes().map((r) => ({ ...r, pattern: pathPattern(r.path) }));
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        deps.log.error({ err }, 'admin request failed');
        if (!res.headersSent) send(res, 500, { error: { code: 'INTERNAL', message: 'internal error' } });
        else res.destroy();
      });
    });
    this.server.headersTimeout = 10_000;
    this.server.requestTimeout = 30_000;
  }

  async listen(host: string, port: number): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host, port }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections?.();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  /** The route table's documentation (every route, with its schemas and examples). */
  routeDocs(): RouteDoc[] {
    return this.routes.map(({ handler: _h, pattern: _p, ...doc }) => doc);
  }

  /** The table's routes plus those the dashboard hook answers (when it is on). */
  allRouteDocs(): RouteDoc[] {
    return [...this.routeDocs(), ...(this.deps.extra ? extraRouteDocs : [])];
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const open = this.routes.find((r) => r.auth === false && r.method === req.method && r.pattern.test(path));
    if (open) return this.answer(open, req, res, path);
    if (this.deps.extra && (await this.deps.extra(req, res, url))) return;
    if (!tokenMatches(this.deps.token, req.headers.authorization)) {
      res.setHeader('www-authenticate', 'Bearer realm="tether-admin"');
      return send(res, 401, errors.unauthorized().toJSON());
    }
    let methodMismatch = false;
    for (const r of this.routes) {
      if (!r.pattern.test(path)) continue;
      if (r.method !== req.method) {
        methodMismatch = true;
        continue;
      }
      return this.answer(r, req, res, path);
    }
    if (methodMismatch)
      return send(res, 405, {
        error: { code: 'METHOD_NOT_ALLOWED', message: `${req.method} is not allowed on ${path}` },
      });
    send(res, 404, errors.notFound(`route ${req.method} ${path}`).toJSON());
  }

  private async answer(
    r: Route & { pattern: RegExp },
    req: http.IncomingMessage,
    res: http.ServerResponse,
    path: string,
  ): Promise<void> {
    const m = r.pattern.exec(path)!;
    try {
      const params = m.slice(1).map((p) => {
        try {
          return decodeURIComponent(p);
        } catch {
          throw errors.badRequest(`malformed percent-escape in the path: ${JSON.stringify(p.slice(0, 80))}`);
        }
      });
      const [status, body] = await r.handler({ req, params, body: () => readBody(req) });
      if (status === 204) {
        res.writeHead(204);
        res.end();
      } else if (body instanceof RawAnswer) {
        res.writeHead(status, { 'content-type': body.contentType });
        res.end(body.body);
      } else send(res, status, body);
    } catch (err) {
      if (isTetherError(err)) send(res, err.status, err.toJSON());
      else throw err;
    }
  }

  private buildRoutes(): Route[] {
    const d = this.deps;
    const views = async (id?: string) => {
      const rows = id === undefined ? await d.tenants.list() : [await d.tenants.get(id)];
      return tenantViews(d.store, d.registry, rows, d.nodeId, d.allowlists);
    };
    return [
      {
        method: 'GET',
        path: '/health',
        operationId: 'health',
        summary: 'Is the gateway up',
        auth: false,
        responses: { 200: { description: 'Up.', schema: healthResponse, example: ex.health } },
        handler: async () => [200, { status: 'ok', version: d.version, node: d.nodeId }],
      },
      {
        method: 'GET',
        path: '/v1/openapi.json',
        operationId: 'openapi',
        summary: 'This OpenAPI 3.1 document',
        description: 'Served without the token: it holds the API shape and the version, no tenant data.',
        auth: false,
        responses: {
          200: {
            description: 'The document.',
            contentType: 'application/json',
            example: '{"openapi":"3.1.0",…}',
          },
        },
        handler: async () => [
          200,
          new RawAnswer(
            'application/json; charset=utf-8',
            `${JSON.stringify(openApiDocument(this.allRouteDocs(), d.version), null, 2)}\n`,
          ),
        ],
      },
      {
        method: 'GET',
        path: '/metrics',
        operationId: 'metrics',
        summary: 'Prometheus metrics',
        responses: {
          200: {
            description: 'Prometheus text exposition format.',
            contentType: 'text/plain; version=0.0.4',
            example: ex.metrics,
          },
        },
        errors: [404],
        handler: async () => {
          if (!d.metrics) throw errors.notFound('route GET /metrics');
          const m = await d.metrics();
          return [200, new RawAnswer(m.contentType, m.body)];
        },
      },
      {
        method: 'GET',
        path: '/v1/tenants',
        operationId: 'listTenants',
        summary: 'List tenants with their keys, sessions and forwards',
        responses: {
          200: { description: 'Every tenant.', schema: tenantListResponse, example: ex.tenantList },
        },
        handler: async () => [200, { tenants: await views() }],
      },
      {
        method: 'POST',
        path: '/v1/tenants',
        operationId: 'addTenant',
        summary: 'Add a tenant, or replace its keys with force',
        description:
          'Without `public_key` the gateway generates an ed25519 key pair and returns the private key once (`private_key`).',
        body: addTenantBody,
        bodyExample: ex.addTenant,
        responses: {
          201: { description: 'Created.', schema: addTenantResponse, example: ex.addTenantResult },
          200: {
            description: 'Keys replaced (`force`).',
            schema: addTenantResponse,
            example: { ...ex.addTenantResult, created: false },
          },
        },
        errors: [400, 409, 413],
        handler: async ({ body }) => {
          const b = parseBody(addTenantBody, await body());
          const lists = allowlistPatch(b);
          if (lists && !d.allowlists) throw errors.unavailable('source-address allowlists on this gateway');
          const r = await d.tenants.add(b.id, { publicKey: b.public_key, force: b.force, quota: b.quota });
          if (lists) await d.allowlists!.change(b.id, '', lists);
          const [view] = await views(b.id);
          return [
            r.created ? 201 : 200,
            {
              tenant: view,
              created: r.created,
              fingerprint: r.fingerprint,
              public_key: r.publicKey,
              ...(r.privateKey ? { private_key: r.privateKey } : {}),
            },
          ];
        },
      },
      {
        method: 'GET',
        path: '/v1/tenants/{id}',
        operationId: 'getTenant',
        summary: 'One tenant',
        responses: { 200: { description: 'The tenant.', schema: tenantResponse, example: ex.tenant } },
        errors: [400, 404],
        handler: async ({ params }) => [200, { tenant: (await views(params[0]!))[0] }],
      },
      {
        method: 'PATCH',
        path: '/v1/tenants/{id}',
        operationId: 'changeTenant',
        summary: "Change a tenant's quota, traffic limits and source-address allowlists",
        description:
          'Quota 0 disables the tenant and ends its live sessions at once. Limits (bandwidth each way, concurrent connections, a monthly or rolling traffic quota) apply to the whole tenant, or with `repository` to one repository; null, 0 or "off" removes one. `balance` picks how new connections are spread over the connectors of a repository. `allow_from` (tenant or, with `repository`, one repository) lists the CIDR blocks callers of every front door must come from; `tunnel_from` (tenant only) those its connectors must log in from; [] or null removes a list.',
        body: changeTenantBody,
        bodyExample: ex.changeTenant,
        responses: {
          200: { description: 'The changed tenant.', schema: tenantResponse, example: ex.tenant },
        },
        errors: [400, 404, 413],
        handler: async ({ params, body }) => {
          const id = params[0]!;
          assertTenantId(id);
          const b = parseBody(changeTenantBody, await body());
          const patch = limitsPatch(b);
          const changesLimits = Object.keys(patch).length > 0;
          if (changesLimits && !d.limits) {
            throw errors.unavailable('changing traffic limits on this gateway');
          }
          const lists = allowlistPatch(b);
          if (lists && !d.allowlists) throw errors.unavailable('source-address allowlists on this gateway');
          await d.tenants.get(id);
          if (b.quota !== undefined) await d.tenants.changeQuota(id, b.quota);
          if (changesLimits) await d.limits!.change(id, b.repository ?? '', patch, d.events);
          if (lists) await d.allowlists!.change(id, b.repository ?? '', lists);
          return [200, { tenant: (await views(id))[0] }];
        },
      },
      {
        method: 'DELETE',
        path: '/v1/tenants/{id}',
        operationId: 'removeTenant',
        summary: 'Remove a tenant',
        description: 'Ends its sessions, deletes its keys and group keys, frees its leases.',
        responses: { 204: { description: 'Removed.' } },
        errors: [400, 404],
        handler: async ({ params }) => {
          await d.tenants.remove(params[0]!);
          return [204, null];
        },
      },
      {
        method: 'POST',
        path: '/v1/tenants/{id}/keys',
        operationId: 'addKey',
        summary: 'Add a public key to a tenant',
        body: addKeyBody,
        bodyExample: ex.addKey,
        responses: { 201: { description: 'Added.', schema: addKeyResponse, example: ex.addKeyResult } },
        errors: [400, 404, 413],
        handler: async ({ params, body }) => {
          const b = parseBody(addKeyBody, await body());
          return [201, await d.tenants.addKey(params[0]!, b.public_key)];
        },
      },
      {
        method: 'POST',
        path: '/v1/tenants/{id}/enrollments',
        operationId: 'createEnrollment',
        summary: 'One-time token for `tether connector register`',
        body: enrollmentBody,
        bodyOptional: true,
        bodyExample: ex.enrollment,
        responses: {
          201: {
            description: 'The token (shown once).',
            schema: enrollmentResponse,
            example: ex.enrollmentResult,
          },
        },
        errors: [400, 404, 413],
        handler: async ({ params, body }) => {
          const b = parseBody(enrollmentBody, await body());
          const ttl = b?.ttl_hours === undefined ? undefined : b.ttl_hours * 3_600_000;
          return [201, await d.tenants.createEnrollment(params[0]!, ttl)];
        },
      },
      {
        method: 'GET',
        path: '/v1/tenants/{id}/repositories',
        operationId: 'listRepositories',
        summary: 'Repositories by group, with group keys',
        responses: {
          200: {
            description: 'Groups and their repositories.',
            schema: repositoriesResponse,
            example: ex.repositories,
          },
        },
        errors: [400, 404],
        handler: async ({ params }) => {
          const id = params[0]!;
          const [view] = await views(id);
          const forwards = view!.forwards;
          // Repositories are "<group>/<repo>" labels; anything else (plain OpenSSH) is ungrouped.
          const byGroup = new Map<
            string,
            Array<(typeof forwards)[number] & { repository: string; address: string }>
          >();
          const ungrouped: typeof forwards = [];
          for (const f of forwards) {
            const p = parseLabel(f.label);
            if (!p) {
              ungrouped.push(f);
              continue;
            }
            const list = byGroup.get(p.group) ?? [];
            list.push({ ...f, repository: p.repo, address: `${p.repo}.${p.group}.${id}` });
            byGroup.set(p.group, list);
          }
          for (const g of byGroup.keys()) await d.groupKeys.ensure(id, g);
          const keys = await d.groupKeys.list(id);
          const groups = keys
            .map((k) => ({
              group: k.group_name,
              key: k.key,
              key_created_at: k.created_at,
              repositories: byGroup.get(k.group_name) ?? [],
            }))
            .sort((a, b) => a.group.localeCompare(b.group));
          return [200, { tenant: id, groups, ungrouped }];
        },
      },
      {
        method: 'POST',
        path: '/v1/tenants/{id}/groups/{group}/key',
        operationId: 'rotateGroupKey',
        summary: 'Rotate a group key',
        description:
          'The old key stops working at once. Only groups the tenant has (a key or a repository lease).',
        noBody: true,
        responses: { 200: { description: 'The new key.', schema: groupKeyResponse, example: ex.groupKey } },
        errors: [400, 404],
        handler: async ({ params }) => {
          const [id, group] = [params[0]!, params[1]!];
          await d.tenants.get(id);
          if (!isValidName(group)) {
            throw errors.badRequest(
              `invalid group name ${JSON.stringify(group)}: use 1-63 letters, digits, "_" or "-", starting with a letter or digit`,
            );
          }
          // Only groups the tenant has (a key, or a repository lease): a typo must not mint a key.
          const known =
            (await d.store.getGroupKey(id, group)) !== undefined ||
            (await d.store.listLeases(id)).some((l) => parseLabel(l.label)?.group === group);
          if (!known) {
            throw new TetherError('GROUP_NOT_FOUND', `tenant ${id} has no group ${JSON.stringify(group)}`, {
              status: 404,
            });
          }
          const row = await d.groupKeys.rotate(id, group);
          return [200, { tenant: id, group, key: row.key, key_created_at: row.created_at }];
        },
      },
    ];
  }
}
