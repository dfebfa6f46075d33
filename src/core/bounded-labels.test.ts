import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BoundedLabels } from './bounded-labels.js';

test('bounded labels: the first N values, then one shared value; forgetting frees a place', () => {
  const b = new BoundedLabels(2);
  assert.equal(b.get('a'), 'a');
  assert.equal(b.get('b'), 'b');
  assert.equal(b.get('c'), '_other');
  assert.equal(b.get('a'), 'a');
  assert.ok(b.forget('a'));
  assert.equal(b.get('c'), 'c');
});
