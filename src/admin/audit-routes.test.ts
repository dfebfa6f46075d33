import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isTetherError } from '../errors/index.js';
import { parseAuditLimit, parseSince } from './audit-routes.js';

const NOW = Date.parse('2026-12-03T12:00:00Z');

test('since: an ISO time or a duration back from now', () => {
  assert.equal(parseSince('2026-12-01', NOW), '2026-12-01T00:00:00.000Z');
  assert.equal(parseSince('2026-12-01T08:30:00Z', NOW), '2026-12-01T08:30:00.000Z');
  assert.equal(parseSince('2026-12-01T08:30:00+01:00', NOW), '2026-12-01T07:30:00.000Z');
  assert.equal(parseSince('24h', NOW), '2026-12-02T12:00:00.000Z');
  assert.equal(parseSince('30m', NOW), '2026-12-03T11:30:00.000Z');
  assert.equal(parseSince('7d', NOW), '2026-11-26T12:00:00.000Z');
  for (const bad of [
    '',
    'yesterday',
    '12',
    '2026-13-45',
    '2026-12-01T25:00:00Z',
    "1h' or 1=1",
    '\u0000',
    '-1h',
  ]) {
    assert.throws(
      () => parseSince(bad, NOW),
      (e: unknown) => isTetherError(e, 'BAD_REQUEST') && /^invalid since /.test(e.message),
      JSON.stringify(bad),
    );
  }
});

test('limit: a whole number from 1 to 1000', () => {
  assert.equal(parseAuditLimit('1'), 1);
  assert.equal(parseAuditLimit('1000'), 1000);
  for (const bad of ['0', '1001', '-1', '1e3', '1.5', '', ' 5', '99999999999']) {
    assert.throws(
      () => parseAuditLimit(bad),
      /invalid limit .*: use a whole number from 1 to 1000/,
      JSON.stringify(bad),
    );
  }
});
