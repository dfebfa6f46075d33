import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../../../test/helpers/core.js';
import { CachedVerifier } from '../../frontdoor/http-proxy/verifiers/cache.js';
import {
  type CallerCredential,
  type Verdict,
  type Verifier,
  verifierUnavailable,
} from '../../frontdoor/http-proxy/verifiers/types.js';
import type { PrimaryMessage, WorkerMessage } from './protocol.js';
import { VerdictBook, WorkerVerdicts } from './shared-verdicts.js';

/** A remote verifier's stand-in: counts calls, can be held or down. */
class Remote implements Verifier {
  calls = 0;
  down = false;
  private held: Array<() => void> = [];
  hold = false;
  version: () => string;
  generation?: () => number;
  constructor(stamp?: () => string) {
    this.version = stamp ?? (() => 'https://verify.example/');
    if (stamp) this.generation = () => 0;
  }
  async verify(c: CallerCredential): Promise<Verdict> {
    this.calls++;
    if (this.hold) await new Promise<void>((r) => this.held.push(r));
    if (this.down) throw verifierUnavailable('cannot reach it');
    return c.token === 'good'
      ? { ok: true, subject: c.username ?? 't', scopes: null }
      : { ok: false, reason: 'no' };
  }
  release(): void {
    for (const r of this.held.splice(0)) r();
  }
}

/** Two workers' caches over one primary book; IPC carried on the next turn, in order. */
function workers(inner: [Verifier, Verifier], ttl = 60_000) {
  const book = new VerdictBook(() => clock.now());
  const clock = new FakeClock();
  const caches = [1, 2].map((slot, i) => {
    const listeners = new Set<(m: unknown) => void>();
    const toWorker = (m: PrimaryMessage) =>
      setImmediate(() => {
        for (const l of listeners) l(m);
      });
    const send = (m: WorkerMessage) =>
      setImmediate(() => {
        if (m.t === 'tether:verdict')
          book.get(slot, m.scope, m.key, (answer) => toWorker({ t: 'tether:verdict', id: m.id, answer }));
        else if (m.t === 'tether:verdict-put') book.put(m.scope, m.key, m.answer, m.ttl);
      });
    const share = new WorkerVerdicts(send, (fn) => {
      listeners.add(fn);
      return () => listeners.delete(fn);
    }).share('route-a');
    return new CachedVerifier(inner[i]!, clock, { ttl, failureTtl: 5_000, share });
  });
  return { book, clock, caches: caches as [CachedVerifier, CachedVerifier] };
}

const alice = { username: 'alice', token: 'good' };

/**
 * Lets every message in flight arrive: each hop is one setImmediate, and a question and its
 * answer take a few (a count of turns, not a wait: it holds on a busy machine too).
 */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

test('a token is verified once for the gateway: concurrent requests on two workers share the call, later ones the answer', async () => {
  const remote = new Remote();
  const { caches, book } = workers([remote, remote]);
  remote.hold = true;
  const all = [
    caches[0].verify(alice),
    caches[1].verify(alice),
    caches[1].verify(alice),
    caches[0].verify(alice),
  ];
  await settle();
  assert.equal(remote.calls, 1, 'one call while it is pending');
  remote.hold = false;
  remote.release();
  const verdicts = await Promise.all(all);
  assert.ok(verdicts.every((v) => v.ok));
  assert.deepEqual(
    verdicts.map((v) => v.shared ?? false),
    [false, true, true, false],
    'the worker that verified logs it; the other got it shared',
  );
  assert.equal((await caches[1].verify(alice)).ok, true);
  assert.equal(remote.calls, 1);
  assert.equal(book.size, 1);
  // a wrong token: verified once too, refused on both
  assert.equal((await caches[1].verify({ username: 'alice', token: 'bad' })).ok, false);
  assert.equal((await caches[0].verify({ username: 'alice', token: 'bad' })).ok, false);
  assert.equal(remote.calls, 2);
});

test('the shared answer expires with its TTL, counted from the verification', async () => {
  const remote = new Remote();
  const { caches, clock } = workers([remote, remote], 10_000);
  await caches[0].verify(alice);
  await new Promise((r) => setImmediate(r)); // its answer reaches the primary
  clock.advance(6_000);
  await caches[1].verify(alice); // shared, 4 s left
  clock.advance(5_000);
  await caches[1].verify(alice);
  assert.equal(remote.calls, 2, 'asked again once the first answer expired');
});

test('the verifier cannot tell: the requests that waited get the same 503; nothing is kept', async () => {
  const remote = new Remote();
  const { caches } = workers([remote, remote]);
  remote.hold = true;
  remote.down = true;
  const a = caches[0].verify(alice);
  const b = caches[1].verify(alice);
  await settle();
  remote.release();
  await assert.rejects(a, /the token verifier is unavailable \(cannot reach it\)/);
  await assert.rejects(
    b,
    (e: Error & { status?: number }) => e.status === 503 && /cannot reach it/.test(e.message),
  );
  remote.hold = false;
  remote.down = false;
  assert.equal((await caches[1].verify(alice)).ok, true);
  assert.equal(remote.calls, 2);
});

test('the worker verifying dies: the ones waiting verify themselves', async () => {
  const remote = new Remote();
  const { caches, book } = workers([remote, remote]);
  remote.hold = true;
  void caches[0].verify(alice).catch(() => {});
  await settle();
  const waiting = caches[1].verify(alice);
  await settle();
  assert.equal(remote.calls, 1);
  remote.hold = false;
  book.releaseAll(1);
  assert.equal((await waiting).ok, true);
  assert.equal(remote.calls, 2);
});

test('a verifier without a version (group keys: answers follow tenant events) shares nothing', async () => {
  const local = {
    calls: 0,
    async verify(): Promise<Verdict> {
      local.calls++;
      return { ok: true, subject: 'acme/g', scopes: null };
    },
  };
  const { caches, book } = workers([local, local]);
  await caches[0].verify(alice);
  await caches[1].verify(alice);
  assert.equal(local.calls, 2);
  assert.equal(book.size, 0);
});

test('a token file: verdicts are shared only between workers that read the same version of it', async () => {
  let v1 = 'ino:1';
  const a = new Remote(() => v1);
  const b = new Remote(() => 'ino:2');
  const { caches } = workers([a, b]);
  await caches[0].verify(alice);
  await caches[1].verify(alice);
  assert.equal(a.calls + b.calls, 2, 'different versions: each verified');
  v1 = 'ino:2';
  const c = new Remote(() => 'ino:2');
  const again = workers([c, c]);
  await again.caches[0].verify(alice);
  await again.caches[1].verify(alice);
  assert.equal(c.calls, 1, 'the same version: shared');
});
