import assert from 'node:assert/strict';
import { test } from 'node:test';
import { configProblem } from '../../test/helpers/core.js';
import { gatewayConfigFrom } from './gateway.js';

const load = (drain_timeout: unknown) =>
  gatewayConfigFrom(drain_timeout === undefined ? {} : { drain_timeout }, 'gateway.yaml', {});

const problem = (v: unknown) => configProblem(() => load(v), `${JSON.stringify(v)} accepted`);

test('drain_timeout: 30 s by default; durations, seconds and 0 accepted', () => {
  assert.equal(load(undefined).drain_timeout, 30_000);
  assert.equal(load('90s').drain_timeout, 90_000);
  assert.equal(load('5m').drain_timeout, 300_000);
  assert.equal(load(12).drain_timeout, 12_000);
  assert.equal(load(0).drain_timeout, 0);
  assert.equal(load('1h').drain_timeout, 3_600_000);
});

test('drain_timeout: negative, garbage and over an hour are refused naming the key', () => {
  assert.match(
    problem(-5),
    /gateway\.yaml: drain_timeout: -5 is not a duration \(use e\.g\. "500ms", "60s", "8h"\)/,
  );
  assert.match(problem('-5s'), /drain_timeout: "-5s" is not a duration/);
  assert.match(problem('soon'), /drain_timeout: "soon" is not a duration/);
  assert.match(problem('61m'), /drain_timeout: at most 1 hour/);
  assert.match(problem(Number.POSITIVE_INFINITY), /drain_timeout: /);
  assert.match(problem(true), /drain_timeout: /);
});
