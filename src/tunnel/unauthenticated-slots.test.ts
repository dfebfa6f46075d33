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

test('under workers each process holds its share (rounded up), and the refusal names the configured bound', () => {
  const s = new UnauthenticatedSlots(9, 8, 2);
  for (let i = 0; i < 4; i++) s.take('10.0.0.1');
  assert.equal(s.refusal('10.0.0.1'), 'unauthenticated_per_source', '8 shared over 2: 4 here');
  assert.equal(
    s.describe('unauthenticated_per_source', '10.0.0.1'),
    'too many unauthenticated connections from 10.0.0.1 (max_unauthenticated_per_source 8, 4 in each of 2 workers)',
  );
  s.take('10.0.0.2');
  assert.equal(s.refusal('10.0.0.3'), 'max_unauthenticated', '9 shared over 2: 5 here');
  assert.equal(
    s.describe('max_unauthenticated', '10.0.0.3'),
    'too many unauthenticated connections (max_unauthenticated 9, 5 in each of 2 workers)',
  );
  // a bound smaller than the workers still lets each hold one
  assert.equal(new UnauthenticatedSlots(1, 1, 4).refusal('10.0.0.1'), undefined);
});
