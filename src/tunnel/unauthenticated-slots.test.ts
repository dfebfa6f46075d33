import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UnauthenticatedSlots } from './unauthenticated-slots.js';

test('one process holds the bounds whole; a slot comes back once', () => {
  const s = new UnauthenticatedSlots(3, 2);
  const a = s.take('10.0.0.1');
  s.take('10.0.0.1');
  assert.equal(s.refusal('10.0.0.1'), 'unauthenticated_per_source');
  assert.equal(
    s.describe('unauthenticated_per_source', '10.0.0.1'),
    'too many unauthenticated connections from 10.0.0.1 (max_unauthenticated_per_source 2)',
  );
  assert.equal(s.refusal('10.0.0.2'), undefined);
  s.take('10.0.0.2');
  assert.equal(s.refusal('10.0.0.3'), 'max_unauthenticated');
  a();
  a();
  assert.equal(s.refusal('10.0.0.3'), undefined, 'given back once');
  s.take('10.0.0.3');
  assert.equal(s.refusal('10.0.0.4'), 'max_unauthenticated', 'a second call gave nothing more back');
});

test('acquire answers at once with the slot or the bound', () => {
  const s = new UnauthenticatedSlots(1, 1);
  const answers: string[] = [];
  s.acquire('10.0.0.1', (a) => answers.push(a.refused ?? 'held'));
  s.acquire('10.0.0.2', (a) => answers.push(a.refused ?? 'held'));
  assert.deepEqual(answers, ['held', 'max_unauthenticated']);
});
