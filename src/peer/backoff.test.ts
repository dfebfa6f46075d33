import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffDelay } from './backoff.js';

test('backoff is full jitter from 0.5 s doubling up to 30 s', () => {
  const top = () => 0.999999;
  assert.equal(backoffDelay(0, top), 499);
  assert.equal(backoffDelay(1, top), 999);
  assert.equal(backoffDelay(5, top), 15_999);
  assert.equal(backoffDelay(6, top), 29_999);
  assert.equal(backoffDelay(1000, top), 29_999);
  assert.equal(
    backoffDelay(3, () => 0),
    0,
  );
  assert.equal(
    backoffDelay(3, () => 0.5),
    2000,
  );
});
