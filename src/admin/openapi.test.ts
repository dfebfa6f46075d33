import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { z } from 'zod';
import { FakeClock, tempStore } from '../../test/helpers/core.js';
import { TenantEvents } from '../core/events.js';
import { ForwardRegistry } from '../core/forward-registry.js';
import { GroupKeyService } from '../core/group-keys.js';
import { TenantService } from '../core/tenants.js';
import { silentLogger } from '../log/index.js';
import type { Store } from '../store/types.js';
import { extraRouteDocs, openApiDocument, type RouteDoc } from './openapi.js';
import { addTenantResponse, enrollmentResponse, repositoriesResponse, tenantResponse } from './schemas.js';
import { AdminServer } from './server.js';

const TOKEN = 'test-admin-token-0123456789';

type Doc = {
  openapi: string;
  info: { version: string };
  paths: Record<string, Record<string, { requestBody?: unknown; responses: Record<string, unknown> }>>;
};

describe('OpenAPI document of the admin API', () => {
  let store: Store;
  let server: AdminServer;
  let base: string;
  before(async () => {
    store = await tempStore();
    const clock = new FakeClock();
    const log = silentLogger();
    const events = new TenantEvents();
    server = new AdminServer({
      token: TOKEN,
      store,
      tenants: new TenantService(store, clock, log, events, 20),
      groupKeys: new GroupKeyService(store, clock, log, events),
      registry: new ForwardRegistry(clock),
      log,
      nodeId: null,
      version: '9.8.7',
      metrics: async () => ({ contentType: 'text/plain; version=0.0.4', body: 'x 1\n' }),
      extra: async () => false,
    });
    const addr = await server.listen('127.0.0.1', 0);
    base = `http://127.0.0.1:${addr.port}`;
  });
  after(async () => {
    await server?.close();
    await store?.close();
  });

  const call = async (method: string, path: string, body?: unknown, token: string | null = TOKEN) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, type: res.headers.get('content-type'), text };
  };

  test('GET /v1/openapi.json without the token: a valid OpenAPI 3.1 document', async () => {
    const res = await call('GET', '/v1/openapi.json', undefined, null);
    assert.equal(res.status, 200);
    assert.match(res.type ?? '', /^application\/json/);
    const doc = JSON.parse(res.text) as Doc;
    assert.equal(doc.openapi, '3.1.0');
    assert.equal(doc.info.version, '9.8.7');
    const validator = new Validator();
    const result = await validator.validate(doc as unknown as Parameters<Validator['validate']>[0]);
    assert.equal(result.valid, true, JSON.stringify(result.errors, null, 2));
    assert.equal(validator.version, '3.1');
  });

  test('every route of the table is in the document, with a request schema where it takes a body', async () => {
    const doc = JSON.parse((await call('GET', '/v1/openapi.json')).text) as Doc;
    const routes = server.allRouteDocs();
    assert.ok(routes.length >= 12, `only ${routes.length} routes`);
    for (const r of routes) {
      const op = doc.paths[r.path]?.[r.method.toLowerCase()];
      assert.ok(op, `${r.method} ${r.path} missing from the document`);
      if (r.body) assert.ok(op.requestBody, `${r.method} ${r.path}: no requestBody`);
      for (const [status, resp] of Object.entries(op.responses)) {
        const content = (resp as { content?: Record<string, { schema?: unknown; example?: unknown }> })
          .content;
        if (status === '204') continue;
        assert.ok(content, `${r.method} ${r.path} ${status}: no content`);
        for (const media of Object.values(content)) {
          assert.ok(media.schema, `${r.method} ${r.path} ${status}: no schema`);
          assert.notEqual(media.example, undefined, `${r.method} ${r.path} ${status}: no example`);
        }
      }
    }
  });

  test("every example parses with its route's own schema", () => {
    for (const r of [...server.routeDocs(), ...extraRouteDocs]) {
      if (r.body && r.bodyExample !== undefined) {
        const p = r.body.safeParse(r.bodyExample);
        assert.ok(p.success, `${r.method} ${r.path} request example: ${p.error?.message}`);
      }
      for (const [status, resp] of Object.entries(r.responses)) {
        if (!resp.schema) continue;
        const p = resp.schema.safeParse(resp.example);
        assert.ok(p.success, `${r.method} ${r.path} ${status} example: ${p.error?.message}`);
      }
    }
  });

  test('a route without a request schema, a response schema or an example is refused', () => {
    const ok: RouteDoc = {
      method: 'POST',
      path: '/v1/things',
      operationId: 'addThing',
      summary: 'Add a thing',
      body: z.object({ n: z.number() }),
      bodyExample: { n: 1 },
      responses: { 201: { description: 'ok', schema: z.object({ n: z.number() }), example: { n: 1 } } },
    };
    assert.doesNotThrow(() => openApiDocument([ok], '1'));
    assert.throws(
      () => openApiDocument([{ ...ok, body: undefined }], '1'),
      /admin routes not documented: POST \/v1\/things: no request body schema/,
    );
    assert.throws(
      () => openApiDocument([{ ...ok, responses: { 201: { description: 'ok' } } }], '1'),
      /POST \/v1\/things: response 201 has no schema/,
    );
    assert.throws(
      () => openApiDocument([{ ...ok, responses: { 200: { description: 'ok', schema: z.string() } } }], '1'),
      /POST \/v1\/things: response 200 has no example/,
    );
  });

  test('real answers match the documented response schemas', async () => {
    const add = await call('POST', '/v1/tenants', { id: 'acme', quota: 3 });
    assert.equal(add.status, 201);
    addTenantResponse.parse(JSON.parse(add.text));
    tenantResponse.parse(JSON.parse((await call('GET', '/v1/tenants/acme')).text));
    tenantResponse.parse(JSON.parse((await call('PATCH', '/v1/tenants/acme', { quota: 4 })).text));
    repositoriesResponse.parse(JSON.parse((await call('GET', '/v1/tenants/acme/repositories')).text));
    const enr = await call('POST', '/v1/tenants/acme/enrollments');
    assert.equal(enr.status, 201);
    enrollmentResponse.parse(JSON.parse(enr.text));
  });

  test('every documented route is answered by the server (no 404 route / 405)', async () => {
    for (const r of server.routeDocs()) {
      const path = r.path.replace('{id}', 'acme').replace('{group}', 'nogroup');
      const res = await call(
        r.method,
        path,
        r.method === 'GET' || r.method === 'DELETE' ? undefined : r.bodyExample,
      );
      assert.notEqual(res.status, 405, `${r.method} ${path}`);
      assert.doesNotMatch(res.text, /"code": "NOT_FOUND"/, `${r.method} ${path}: ${res.text}`);
    }
  });
});
