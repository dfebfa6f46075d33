import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TetherError } from '../errors/index.js';
import { exitCodeFor } from './exit.js';

test('the CLI exits with the catalog exit code of a TetherError, 1 for anything else', () => {
  assert.equal(exitCodeFor(new TetherError('TENANT_NOT_FOUND', 'tenant "x" does not exist')), 3);
  assert.equal(exitCodeFor(new TetherError('PORT_RANGE_EXHAUSTED', 'no free port')), 5);
  assert.equal(exitCodeFor(new Error('plain')), 1);
});
