import http from 'node:http';
import type { AddressInfo } from 'node:net';
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
import type { ManagedRepoService } from '../core/managed-repos.js';
import type { TenantService } from '../core/tenants.js';
import { errors, TetherError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import type { Store } from '../store/types.js';
import type { SourceAllowlists } from '../tunnel/source-allowlists.js';
import { allowlistPatch } from './allowlists.js';
import { auditRoutes } from './audit-routes.js';
import { managedRoutes } from './managed-routes.js';
import { ssoRouteDocs } from './oidc-openapi.js';
import type { DashboardSso } from './oidc-routes.js';
import { examples as ex, extraRouteDocs, openApiDocument, type RouteDoc } from './openapi.js';
import { answer, parseBody, RawAnswer, type Route, RouteTable, send, tokenMatches } from './router.js';
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
  /**
   * Brings the registry's view of the other processes up to date before a tenant view is read
   * (a primary under `workers`: the reports its workers hold back).
   */
  settle?: () => Promise<void>;
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
  /** Dashboard single sign-on: its routes, and sessions in place of the token. */
  sso?: DashboardSso;
  /** Managed repositories (the operator proposes, the connectors decide). */
  managed?: ManagedRepoService;
  /** Extra routes (dashboard, events) tried before the 404. */
  extra?: (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => Promise<boolean>;
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

/** The admin HTTP API: JSON, bearer token. */
export class AdminServer {
  private readonly server: http.Server;
  private readonly routes: RouteTable;

  constructor(private readonly deps: AdminDeps) {
    this.routes = new RouteTable(this.buildRoutes());
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
    const addr = this.server.address() as AddressInfo;
    this.deps.sso?.listening(addr);
    return addr;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections?.();
    await new Promise<void>((r) => this.server.close(() => r()));
    this.deps.sso?.close();
  }

  /** The route table's documentation (every route, with its schemas and examples). */
  routeDocs(): RouteDoc[] {
    return this.routes.docs();
  }

  /** The table's routes plus those the dashboard hook answers (when it is on). */
  allRouteDocs(): RouteDoc[] {
    return [
      ...this.routeDocs(),
      ...(this.deps.extra ? extraRouteDocs : []),
      ...(this.deps.sso ? ssoRouteDocs : []),
    ];
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const open = this.routes.open(req.method, path);
    if (open) return answer(open, req, res);
    if (this.deps.sso && (await this.deps.sso.routes(req, res, url))) return;
    if (this.deps.extra && (await this.deps.extra(req, res, url))) return;
    const access = tokenMatches(this.deps.token, req.headers.authorization)
      ? 'pass'
      : (this.deps.sso?.authorize(req, res, path) ?? 'none');
    if (access === 'answered') return;
    if (access === 'none') {
      res.setHeader('www-authenticate', 'Bearer realm="tether-admin"');
      return send(res, 401, errors.unauthorized().toJSON());
    }
    const m = this.routes.match(req.method, path);
    if (m === 'method-not-allowed')
      return send(res, 405, {
        error: { code: 'METHOD_NOT_ALLOWED', message: `${req.method} is not allowed on ${path}` },
      });
    if (m === 'not-found') return send(res, 404, errors.notFound(`route ${req.method} ${path}`).toJSON());
    return answer(m, req, res);
  }

  private buildRoutes(): Route[] {
    const d = this.deps;
    const views = async (id?: string) => {
      const rows = id === undefined ? await d.tenants.list() : [await d.tenants.get(id)];
      await d.settle?.();
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
          'Quota 0 disables the tenant and ends its live sessions at once. Limits (bandwidth each way, concurrent connections, a monthly or rolling traffic quota) apply to the whole tenant, or with `repository` to one repository; null, 0 or "off" removes one. `balance` picks how new connections are spread over the connectors of a repository. `allow_from` (tenant or, with `repository`, one repository) lists the CIDR blocks callers of every front door must come from; `tunnel_from` (tenant only) those its connectors must log in from; [] or null removes a list. A narrowed list ends the open connections and connector sessions it no longer admits.',
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
      ...auditRoutes({ store: d.store, tenants: d.tenants, now: () => Date.now() }),
      ...managedRoutes(d.managed),
    ];
  }
}
