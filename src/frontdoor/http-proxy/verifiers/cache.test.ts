import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock } from '../../../../test/helpers/core.js';
import { CachedVerifier } from './cache.js';
import { type CallerCredential, type Verdict, type Verifier, verifierUnavailable } from './types.js';

class CountingVerifier implements Verifier {
  calls = 0;
  gen = 0;
  down = false;
  pending: Array<() => void> = [];
  hold = false;
  async verify(c: CallerCredential): Promise<Verdict> {
    this.calls++;
    if (this.hold) await new Promise<void>((r) => this.pending.push(r));
    if (this.down) throw verifierUnavailable('test');
    return c.token === 'good'
      ? { ok: true, subject: c.username ?? 'x', scopes: null }
      : { ok: false, reason: 'bad' };
  }
  generation(): number {
    return this.gen;
  }
  release(): void {
    for (const r of this.pending.splice(0)) r();
  }
}

describe('http-proxy verifier cache', () => {
  it('keeps valid answers for the TTL and invalid ones for the failure TTL', async () => {
    const clock = new FakeClock();
    const inner = new CountingVerifier();
    const v = new CachedVerifier(inner, clock, { ttl: 60_000, failureTtl: 5_000 });
    for (let i = 0; i < 3; i++) assert.equal((await v.verify({ username: 'a', token: 'good' })).ok, true);
    for (let i = 0; i < 3; i++) assert.equal((await v.verify({ username: 'a', token: 'bad' })).ok, false);
    assert.equal(inner.calls, 2);
    clock.advance(5_000);
    await v.verify({ username: 'a', token: 'bad' });
    await v.verify({ username: 'a', token: 'good' });
    assert.equal(inner.calls, 3);
    clock.advance(55_000);
    await v.verify({ username: 'a', token: 'good' });
    assert.equal(inner.calls, 4);
  });

  it('keys on username and token together', async () => {
    const inner = new CountingVerifier();
    const v = new CachedVerifier(inner, new FakeClock(), { ttl: 60_000, failureTtl: 5_000 });
    await v.verify({ username: 'a', token: 'good' });
    await v.verify({ username: 'b', token: 'good' });
    await v.verify({ token: 'good' });
    assert.equal(inner.calls, 3);
  });

  it('lets concurrent requests with the same token share one call', async () => {
    const inner = new CountingVerifier();
    inner.hold = true;
    const v = new CachedVerifier(inner, new FakeClock(), { ttl: 60_000, failureTtl: 5_000 });
    const all = Array.from({ length: 20 }, () => v.verify({ username: 'a', token: 'good' }));
    const other = v.verify({ username: 'a', token: 'bad' });
    await new Promise((r) => setImmediate(r));
    inner.release();
    const results = await Promise.all(all);
    assert.ok(results.every((r) => r.ok));
    assert.equal((await other).ok, false);
    assert.equal(inner.calls, 2);
  });

  it('never caches "unavailable": every waiting request fails, the next one asks again', async () => {
    const inner = new CountingVerifier();
    inner.down = true;
    inner.hold = true;
    const v = new CachedVerifier(inner, new FakeClock(), { ttl: 60_000, failureTtl: 5_000 });
    const all = Array.from({ length: 5 }, () =>
      v.verify({ token: 'good' }).then(
        () => 'passed',
        (e: Error) => e.message,
      ),
    );
    await new Promise((r) => setImmediate(r));
    inner.release();
    for (const r of await Promise.all(all)) assert.match(r, /verifier is unavailable/);
    assert.equal(inner.calls, 1);
    inner.down = false;
    inner.hold = false;
    assert.equal((await v.verify({ token: 'good' })).ok, true);
    assert.equal(inner.calls, 2);
  });

  it('drops answers when the source of truth changes or on clear()', async () => {
    const inner = new CountingVerifier();
    const v = new CachedVerifier(inner, new FakeClock(), { ttl: 60_000, failureTtl: 5_000 });
    await v.verify({ token: 'good' });
    inner.gen++;
    await v.verify({ token: 'good' });
    assert.equal(inner.calls, 2);
    v.clear();
    await v.verify({ token: 'good' });
    assert.equal(inner.calls, 3);
  });

  it('stays within its bound', async () => {
    const inner = new CountingVerifier();
    const v = new CachedVerifier(inner, new FakeClock(), { ttl: 60_000, failureTtl: 5_000, maxEntries: 10 });
    for (let i = 0; i < 25; i++) await v.verify({ token: `t${i}` });
    assert.ok(v.size <= 10);
  });
});
