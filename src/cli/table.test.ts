import assert from 'node:assert/strict';
import { test } from 'node:test';
import { printable } from './table.js';

test('the CLI escapes what it prints', () => {
  assert.equal(printable('h\x1b]0;t\x07\u202e\x9b'), 'h\\x1b]0;t\\x07\\u202e\\x9b');
  assert.equal(printable('plain text/ü'), 'plain text/ü');
});
