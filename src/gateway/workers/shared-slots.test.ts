import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SlotAnswer, SlotKeeper } from '../../tunnel/unauthenticated-slots.js';
import type { PrimaryMessage, WorkerMessage } from './protocol.js';
import { SlotLedger, WorkerSlots } from './shared-slots.js';

/** Two workers and the primary's ledger, their messages carried by hand (as IPC would, in order). */
function gateway(max: number, perSource: number) {
  const ledger = new SlotLedger();
  const queue: Array<() => void> = [];
  const workers = [1, 2].map((slot) => {
    const listeners = new Set<(m: unknown) => void>();
    const toWorker = (m: PrimaryMessage) =>
      queue.push(() => {
        for (const l of listeners) l(m);
      });
    const send = (m: WorkerMessage) =>
      queue.push(() => {
        if (m.t === 'tether:slot') {
          const refused = ledger.take(slot, m);
          toWorker({ t: 'tether:slot', id: m.id, ...(refused ? { refused } : {}) });
        } else if (m.t === 'tether:slot-release') ledger.release(slot, m.id);
      });
    const ws = new WorkerSlots(send, (fn) => {
      listeners.add(fn);
      return () => listeners.delete(fn);
    });
    return { slot, keeper: ws.keeper('tunnel', max, perSource) };
  });
  const deliver = () => {
    while (queue.length) queue.shift()!();
  };
  const ask = (k: SlotKeeper, ip: string): SlotAnswer => {
    let answer: SlotAnswer | undefined;
    k.acquire(ip, (a) => {
      answer = a;
    });
    assert.equal(answer, undefined, 'a worker waits for the primary');
    deliver();
    assert.ok(answer, 'answered');
    return answer;
  };
  return { ledger, workers, ask, deliver };
}

test('one count for the whole gateway: whichever worker the connections land on, the bounds hold exactly', () => {
  const { ledger, workers, ask, deliver } = gateway(5, 3);
  const [w1, w2] = workers.map((w) => w.keeper) as [SlotKeeper, SlotKeeper];
  // three from one address, two on one worker and one on the other: all within the bound
  const a = ask(w1, '10.0.0.1');
  assert.ok(!a.refused);
  assert.ok(!ask(w1, '10.0.0.1').refused);
  assert.ok(!ask(w2, '10.0.0.1').refused);
  assert.equal(ask(w2, '10.0.0.1').refused, 'unauthenticated_per_source', 'the fourth, on either worker');
  assert.equal(ask(w1, '10.0.0.1').refused, 'unauthenticated_per_source');
  assert.equal(
    w2.describe('unauthenticated_per_source', '10.0.0.1'),
    'too many unauthenticated connections from 10.0.0.1 (max_unauthenticated_per_source 3)',
  );
  assert.equal(w1.count('10.0.0.1'), 2, 'what this worker holds');
  assert.equal(w2.count(), 1);
  assert.equal(ledger.count('tunnel', '10.0.0.1'), 3);
  // a slot given back on one worker is free for a connection on the other
  if (!a.refused) {
    a.release();
    a.release();
  }
  deliver();
  assert.equal(ledger.count('tunnel'), 2, 'given back once');
  assert.ok(!ask(w2, '10.0.0.1').refused);
  // the gateway-wide bound
  assert.ok(!ask(w2, '10.0.0.2').refused);
  assert.ok(!ask(w1, '10.0.0.3').refused);
  assert.equal(ask(w1, '10.0.0.4').refused, 'max_unauthenticated');
});

test("a worker that dies gives back every slot it held; the other worker's stay", () => {
  const { ledger, workers, ask } = gateway(4, 4);
  const [w1, w2] = workers.map((w) => w.keeper) as [SlotKeeper, SlotKeeper];
  for (let i = 0; i < 3; i++) assert.ok(!ask(w1, '10.0.0.1').refused);
  assert.ok(!ask(w2, '10.0.0.1').refused);
  assert.equal(ask(w2, '10.0.0.1').refused, 'max_unauthenticated');
  ledger.releaseAll(1);
  assert.equal(ledger.count('tunnel'), 1);
  assert.ok(!ask(w2, '10.0.0.1').refused);
});

test('a worker asks at most `max` questions at once: a flood waiting for answers is refused at the worker', () => {
  const { workers, deliver } = gateway(2, 2);
  const k = workers[0]!.keeper;
  const answers: Array<string> = [];
  for (let i = 0; i < 3; i++) k.acquire(`10.0.0.${i}`, (a) => answers.push(a.refused ?? 'held'));
  assert.deepEqual(answers, ['max_unauthenticated'], 'the third is refused without asking');
  deliver();
  assert.deepEqual(answers, ['max_unauthenticated', 'held', 'held']);
});
