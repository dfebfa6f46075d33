import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { FakeClock, tempStore } from '../../test/helpers/core.js';
import { TenantEvents } from '../core/events.js';
import { ForwardRegistry } from '../core/forward-registry.js';
import { GroupKeyService } from '../core/group-keys.js';
import { generateKeyPair } from '../core/ssh-keys.js';
import { TenantService } from '../core/tenants.js';
import { silentLogger } from '../log/index.js';
import type { Store } from '../store/types.js';
import { AdminServer } from './server.js';

/** Bounded runs: every property test of the project together stays well under 20 s. */
const RUNS = { numRuns: 40 };
const TOKEN = 'test-admin-token-0123456789';

const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });
const KEYS = Array.from({ length: 3 }, (_, i) => generateKeyPair(`k${i}`).publicKey);

/** Statuses a client may meet from the write routes; 500 is never one of them. */
const EXPECTED = new Set([200, 201, 204, 400, 404, 405, 409, 413]);

const tenantId = fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,20}$/);
const scalar = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constantFrom(
    -1,
    0,
    1,
    3000,
    3001,
    2.5,
    '20',
    1e21,
    Number.MAX_SAFE_INTEGER,
    'ssh-ed25519 AAAA',
    ...KEYS,
  ),
);
const value = fc.oneof(
  w(4, scalar),
  w(1, fc.array(scalar, { maxLength: 3 })),
  w(1, fc.dictionary(fc.string({ maxLength: 6 }), scalar, { maxKeys: 3 })),
);
/** Bodies built from the real field names with any values, plus stray fields. */
const body = fc.oneof(
  w(
    6,
    fc.record(
      {
        id: fc.oneof(w(3, tenantId), w(1, scalar)),
        public_key: fc.oneof(w(1, fc.constantFrom(...KEYS)), w(2, scalar)),
        force: fc.oneof(fc.boolean(), scalar),
        quota: fc.oneof(fc.integer({ min: -5, max: 3005 }), scalar),
        ttl_hours: fc.oneof(fc.double({ min: -1, max: 1000 }), scalar),
        stray: value,
      },
      { requiredKeys: [] },
    ),
  ),
  w(1, value),
);
/** Raw request bodies: JSON text, broken JSON, binary, huge. */
const rawBody = fc.oneof(
  body.map((b) => JSON.stringify(b) ?? ''),
  fc.string({ unit: 'binary-ascii', maxLength: 100 }),
  fc.constantFrom(
    '{',
    '{"id":',
    '[1,2',
    'null',
    '""',
    '\u0000',
    '{"id":"a","id":"b"}',
    'x'.repeat(70 * 1024),
  ),
);
const route = fc.oneof(
  fc.constant({ method: 'POST', path: '/v1/tenants' }),
  tenantId.map((id) => ({ method: 'PATCH', path: `/v1/tenants/${id}` })),
  tenantId.map((id) => ({ method: 'POST', path: `/v1/tenants/${id}/keys` })),
  tenantId.map((id) => ({ method: 'POST', path: `/v1/tenants/${id}/enrollments` })),
  fc
    .string({ maxLength: 12 })
    .map((s) => ({ method: 'PATCH', path: `/v1/tenants/${encodeURIComponent(s)}` })),
  fc
    .constantFrom('%', '%zz', '%c3%28', 'a%2fb', '..', '%00')
    .map((s) => ({ method: 'DELETE', path: `/v1/tenants/${s}` })),
);

describe('admin API request bodies (properties, real AdminServer on a temp store)', () => {
  let store: Store;
  let server: AdminServer;
  let base: string;
  before(async () => {
    store = await tempStore();
    const clock = new FakeClock();
    const log = silentLogger();
    const events = new TenantEvents();
    const tenants = new TenantService(store, clock, log, events, 20);
    const groupKeys = new GroupKeyService(store, clock, log, events);
    server = new AdminServer({
      token: TOKEN,
      store,
      tenants,
      groupKeys,
      registry: new ForwardRegistry(clock),
      log,
      nodeId: null,
      version: 'test',
    });
    const addr = await server.listen('127.0.0.1', 0);
    base = `http://127.0.0.1:${addr.port}`;
  });
  after(async () => {
    await server?.close();
    await store?.close();
  });

  const call = async (method: string, path: string, raw?: string, token = TOKEN) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: raw,
    });
    const text = await res.text();
    return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : undefined };
  };

  test('any body on any write route: a 2xx or a coded 4xx with a message, never a 500', async () => {
    await fc.assert(
      fc.asyncProperty(route, rawBody, async (r, raw) => {
        const res = await call(r.method, r.path, raw);
        assert.ok(EXPECTED.has(res.status), `${r.method} ${r.path} ${raw.slice(0, 80)} → ${res.status}`);
        if (res.status >= 400) {
          const err = (res.json as { error: { code: string; message: string } }).error;
          assert.match(err.code, /^[A-Z_]+$/);
          assert.ok(err.message.length > 0 && err.message.length < 2000, err.message);
        }
        if (res.status === 413) assert.ok(raw.length > 64 * 1024);
      }),
      RUNS,
    );
  });

  test('a body over 64 KiB is a 413 the client receives, not a reset connection', async () => {
    for (const size of [64 * 1024 + 1, 1024 * 1024]) {
      const res = await call('POST', '/v1/tenants', 'x'.repeat(size));
      assert.equal(res.status, 413);
      assert.deepEqual(res.json, {
        error: { code: 'BODY_TOO_LARGE', message: 'request body over 65536 bytes' },
      });
    }
  });

  test('a field of the wrong type or out of range is a 400 that names the field', async () => {
    const bad = fc.oneof(
      fc.record({ id: fc.oneof(fc.integer(), fc.constantFrom('', 'UPPER', '-x', 'a'.repeat(64), 'a b')) }),
      fc.record({
        id: tenantId,
        quota: fc.oneof(fc.integer({ min: 3001 }), fc.integer({ max: -1 }), fc.constantFrom(2.5, '7', true)),
      }),
      fc.record({ id: tenantId, force: fc.constantFrom('yes', 1, null) }),
      fc.record({ id: tenantId, [`x${'y'}`]: scalar }),
    );
    await fc.assert(
      fc.asyncProperty(bad, async (b) => {
        const res = await call('POST', '/v1/tenants', JSON.stringify(b));
        assert.equal(res.status, 400, JSON.stringify(b));
        const err = (
          res.json as { error: { code: string; message: string; details?: Array<{ path: string }> } }
        ).error;
        const field = Object.keys(b).find((k) => k !== 'id') ?? 'id';
        const named =
          err.details?.some((d) => d.path === field || d.path === 'id') || err.message.includes('tenant id');
        assert.ok(named, `${JSON.stringify(b)} → ${err.message}`);
      }),
      RUNS,
    );
  });

  test('model: adds, quota changes and removals with valid bodies match a plain map', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.record({
              op: fc.constant('add' as const),
              id: fc.constantFrom('m1', 'm2', 'm3'),
              quota: fc.option(fc.integer({ min: 0, max: 3000 }), { nil: undefined }),
              key: fc.option(fc.constantFrom(...KEYS), { nil: undefined }),
            }),
            fc.record({
              op: fc.constant('quota' as const),
              id: fc.constantFrom('m1', 'm2', 'm3'),
              quota: fc.integer({ min: 0, max: 3000 }),
            }),
            fc.record({ op: fc.constant('remove' as const), id: fc.constantFrom('m1', 'm2', 'm3') }),
          ),
          { maxLength: 12 },
        ),
        async (ops) => {
          const model = new Map<string, number>();
          for (const id of ['m1', 'm2', 'm3']) await call('DELETE', `/v1/tenants/${id}`);
          for (const o of ops) {
            if (o.op === 'add') {
              const res = await call(
                'POST',
                '/v1/tenants',
                JSON.stringify({ id: o.id, quota: o.quota, public_key: o.key }),
              );
              if (model.has(o.id)) assert.equal(res.status, 409);
              else {
                assert.equal(res.status, 201);
                const created = res.json as { private_key?: string; fingerprint: string };
                assert.equal(
                  created.private_key === undefined,
                  o.key !== undefined,
                  'a private key only when generated',
                );
                model.set(o.id, o.quota ?? 20);
              }
            } else if (o.op === 'quota') {
              const res = await call('PATCH', `/v1/tenants/${o.id}`, JSON.stringify({ quota: o.quota }));
              assert.equal(res.status, model.has(o.id) ? 200 : 404);
              if (model.has(o.id)) model.set(o.id, o.quota);
            } else {
              const res = await call('DELETE', `/v1/tenants/${o.id}`);
              assert.equal(res.status, model.has(o.id) ? 204 : 404);
              model.delete(o.id);
            }
          }
          const list = (await call('GET', '/v1/tenants')).json as {
            tenants: Array<{ id: string; quota: number }>;
          };
          const seen = new Map(
            list.tenants.filter((t) => t.id.startsWith('m') && t.id.length === 2).map((t) => [t.id, t.quota]),
          );
          assert.deepEqual(seen, model);
        },
      ),
      { numRuns: 15 },
    );
  });

  test('without the right token every route is a 401, whatever the body', async () => {
    await fc.assert(
      fc.asyncProperty(
        route,
        rawBody,
        fc.constantFrom('', 'wrong', `${TOKEN}x`, TOKEN.slice(1), TOKEN.toUpperCase()),
        async (r, raw, token) => {
          const res = await call(r.method, r.path, raw, token);
          assert.equal(res.status, 401);
        },
      ),
      { numRuns: 30 },
    );
  });
});
