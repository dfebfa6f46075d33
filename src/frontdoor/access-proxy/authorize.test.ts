import assert from 'node:assert/strict';
import { timingSafeEqual } from 'node:crypto';
import { before, describe, test } from 'node:test';
import { FakeClock, quietLog, tempStore } from '../../../test/helpers/core.js';
import { TenantEvents } from '../../core/events.js';
import { ForwardRegistry } from '../../core/forward-registry.js';
import { GroupKeyService } from '../../core/group-keys.js';
import { TenantService } from '../../core/tenants.js';
import { FailureThrottle } from '../../core/throttle.js';
import type { Store } from '../../store/types.js';
import { AccessAuthorizer } from './authorize.js';

/**
 * A wrong key costs the same work whatever exists: the same store calls, one comparison of two
 * 32-byte digests, the same answer; and it counts against the source's throttle either way.
 */
describe('access proxy authorization is constant-work with respect to existence', () => {
  let store: Store;
  let calls: string[];
  let compares: Array<[number, number]>;
  let authorizer: AccessAuthorizer;
  let throttle: FailureThrottle;
  let rightKey: string;

  before(async () => {
    const real = await tempStore();
    calls = [];
    // every store call the authorizer makes, in order (what the answer's time depends on)
    store = new Proxy(real, {
      get(target, prop, recv) {
        const v = Reflect.get(target, prop, recv);
        if (typeof v !== 'function') return v;
        return (...args: unknown[]) => {
          calls.push(String(prop));
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const clock = new FakeClock();
    const events = new TenantEvents();
    compares = [];
    const groupKeys = new GroupKeyService(store, clock, quietLog(), events, (a, b) => {
      compares.push([a.length, b.length]);
      return timingSafeEqual(a, b);
    });
    await new TenantService(real, clock, quietLog(), events, 20).add('acme');
    rightKey = (await groupKeys.ensure('acme', 'grp')).key;
    await real.leasePort('acme', 'grp/web', { low: 40000, high: 40010 }, new Date().toISOString());
    throttle = new FailureThrottle(clock, { maxFailures: 1000, windowMs: 60_000, blockMs: 60_000 });
    authorizer = new AccessAuthorizer({ store, registry: new ForwardRegistry(clock), groupKeys, throttle });
  });

  const basic = (user: string, key: string) => `Basic ${Buffer.from(`${user}:${key}`).toString('base64')}`;

  async function attempt(authority: string, user: string, key: string, source: string) {
    calls.length = 0;
    compares.length = 0;
    const d = await authorizer.authorize({ authority, authorization: basic(user, key), source });
    return { d, calls: [...calls], compares: [...compares] };
  }

  test('a wrong key: same store calls, one 32-byte comparison, same status, code and message', async () => {
    const wrong = 'x'.repeat(43);
    const cases = {
      existing: await attempt('web.grp.acme:443', 'acme', wrong, '10.0.0.1'),
      missingRepo: await attempt('nope.grp.acme:443', 'acme', wrong, '10.0.0.2'),
      shortKey: await attempt('nope.grp.acme:443', 'acme', 'x', '10.0.0.3'),
    };
    const missingGroup = await attempt('web.nogrp.acme:443', 'acme', wrong, '10.0.0.4');
    const missingTenant = await attempt('web.grp.ghost:443', 'ghost', wrong, '10.0.0.5');
    for (const [name, r] of Object.entries({ ...cases, missingGroup, missingTenant })) {
      assert.equal(r.d.ok, false, name);
      if (r.d.ok) continue;
      assert.equal(r.d.status, 403, name);
      assert.equal(r.d.code, 'WRONG_GROUP_KEY', name);
      assert.deepEqual(r.compares, [[32, 32]], `${name}: one comparison of two digests`);
      assert.deepEqual(r.calls, ['listGroupKeys'], `${name}: store calls`);
    }
    const msg = (r: typeof missingGroup) => (r.d.ok ? '' : r.d.message);
    assert.equal(msg(cases.existing), msg(cases.missingRepo));
    assert.equal(msg(cases.existing), 'wrong group key for group grp of tenant acme');
    assert.equal(msg(missingGroup), 'wrong group key for group nogrp of tenant acme');
    assert.equal(msg(missingTenant), 'wrong group key for group grp of tenant ghost');
  });

  test('a wrong key counts against the throttle whether the repository exists or not', async () => {
    for (const authority of ['web.grp.acme', 'nope.grp.acme', 'web.grp.ghost']) {
      const src = `10.1.0.${authority.length}`;
      const user = authority.split('.')[2]!;
      const before = throttle.blockedFor(src);
      assert.equal(before, 0);
      const t = new FailureThrottle(new FakeClock(), { maxFailures: 2, windowMs: 60_000, blockMs: 60_000 });
      const a = new AccessAuthorizer({
        store,
        registry: new ForwardRegistry(new FakeClock()),
        groupKeys: new GroupKeyService(store, new FakeClock(), quietLog(), new TenantEvents()),
        throttle: t,
      });
      for (let i = 0; i < 2; i++)
        await a.authorize({ authority, authorization: basic(user, 'bad'), source: src });
      const third = await a.authorize({ authority, authorization: basic(user, 'bad'), source: src });
      assert.ok(!third.ok && third.status === 429, `${authority}: ${JSON.stringify(third)}`);
    }
  });

  test('the right key then tells existence: 404 for a missing repository, 503 for an offline one', async () => {
    const missing = await attempt('nope.grp.acme', 'acme', rightKey, '10.2.0.1');
    assert.ok(!missing.d.ok && missing.d.status === 404 && missing.d.code === 'REPOSITORY_NOT_FOUND');
    const offline = await attempt('web.GRP.acme', 'acme', rightKey, '10.2.0.2');
    assert.ok(!offline.d.ok && offline.d.status === 503, JSON.stringify(offline.d));
  });
});
