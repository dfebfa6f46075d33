import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FakeClock } from '../../test/helpers/core.js';
import { type SessionLimits, SessionStore, type SessionUser } from './session-store.js';

const LIMITS: SessionLimits = { idleMs: 60_000, lifetimeMs: 600_000, maxSessions: 5, maxPerUser: 2 };

const user = (subject: string, role: 'admin' | 'viewer' = 'admin'): SessionUser => ({
  subject,
  email: `${subject}@example.com`,
  name: subject,
  groups: [],
  role,
});

function signIn(store: SessionStore, who: string): string {
  const r = store.create(user(who));
  assert.ok(r.ok);
  return r.id;
}

describe('dashboard session store', () => {
  test('a session ends after idle_timeout without use; use moves the idle expiry', () => {
    const clock = new FakeClock();
    const store = new SessionStore(clock, LIMITS);
    const id = signIn(store, 'alice');
    clock.advance(59_000);
    assert.ok(store.use(id), 'used just before the idle timeout');
    clock.advance(59_000);
    assert.ok(store.peek(id), 'the use moved the idle expiry');
    clock.advance(1_000);
    assert.equal(store.peek(id), undefined, 'peek does not count as use: idle for 60 s');
    assert.equal(store.size, 0, 'an expired session is dropped');
  });

  test('a session ends at its lifetime however busy it is', () => {
    const clock = new FakeClock();
    const store = new SessionStore(clock, LIMITS);
    const id = signIn(store, 'alice');
    const s = store.peek(id)!;
    for (let t = 0; t < 599; t++) {
      clock.advance(1_000);
      assert.ok(store.use(id), `in use at ${t + 1} s`);
    }
    assert.equal(store.expiresAt(s), s.createdAt + 600_000);
    clock.advance(1_000);
    assert.equal(store.use(id), undefined, 'ended at 600 s');
  });

  test('past max_sessions a sign-in is refused; past max_per_user the user’s oldest ends', () => {
    const clock = new FakeClock();
    const store = new SessionStore(clock, LIMITS);
    const a1 = signIn(store, 'alice');
    clock.advance(1);
    const a2 = signIn(store, 'alice');
    const a3 = store.create(user('alice'));
    assert.ok(a3.ok);
    assert.equal(a3.evicted, 1);
    assert.equal(store.peek(a1), undefined, 'alice’s oldest ended');
    assert.ok(store.peek(a2));
    assert.ok(store.peek(a3.id));
    signIn(store, 'bob');
    signIn(store, 'carol');
    signIn(store, 'erin');
    assert.equal(store.size, 5);
    assert.deepEqual(store.create(user('dave')), { ok: false, reason: 'full' });
    assert.equal(store.size, 5, 'nobody else lost a session');
    // Once one expires there is room again.
    clock.advance(61_000);
    assert.ok(store.create(user('dave')).ok);
  });

  test('sign-out ends a session; unknown, empty and oversized ids find nothing', () => {
    const store = new SessionStore(new FakeClock(), LIMITS);
    const id = signIn(store, 'alice');
    assert.equal(store.delete(id), true);
    assert.equal(store.delete(id), false);
    assert.equal(store.peek(id), undefined);
    assert.equal(store.peek(undefined), undefined);
    assert.equal(store.peek(''), undefined);
    assert.equal(store.peek('x'.repeat(10_000)), undefined);
  });

  test('ids are 256-bit random, CSRF tokens differ per session', () => {
    const store = new SessionStore(new FakeClock(), { ...LIMITS, maxSessions: 100, maxPerUser: 100 });
    const ids = new Set<string>();
    const tokens = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const r = store.create(user('alice'));
      assert.ok(r.ok);
      assert.match(r.id, /^[A-Za-z0-9_-]{43}$/);
      ids.add(r.id);
      tokens.add(r.session.csrf);
    }
    assert.equal(ids.size, 50);
    assert.equal(tokens.size, 50);
  });

  test('watchers hear when a session ends: at expiry (by the timer), sign-out, eviction', () => {
    const clock = new FakeClock();
    const store = new SessionStore(clock, LIMITS);
    const ended: string[] = [];
    const a = signIn(store, 'alice');
    const b = signIn(store, 'bob');
    store.watch(a, () => ended.push('alice'));
    store.watch(b, () => ended.push('bob'));
    clock.advance(30_000);
    store.use(b);
    clock.advance(30_000);
    assert.deepEqual(ended, ['alice'], 'alice idle for 60 s, heard without any request');
    store.delete(b);
    assert.deepEqual(ended, ['alice', 'bob']);
    const c1 = signIn(store, 'carol');
    const stop = store.watch(c1, () => ended.push('never'));
    stop();
    const c2 = signIn(store, 'carol');
    store.watch(c2, () => ended.push('carol'));
    signIn(store, 'carol'); // evicts c1 (unwatched)
    signIn(store, 'carol'); // evicts c2
    assert.deepEqual(ended, ['alice', 'bob', 'carol']);
    store.close();
    assert.equal(store.size, 0);
    assert.equal(clock.pending, 0, 'no timer left behind');
  });
});
