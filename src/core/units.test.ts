import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  formatBytes,
  formatDuration,
  formatPeriod,
  formatRate,
  parseBytes,
  parseDuration,
  parseRate,
} from './units.js';

function message(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  assert.fail('expected an error');
}

describe('units', () => {
  test('bytes: decimal prefixes written, binary and decimal read', () => {
    assert.equal(parseBytes('500GB'), 500e9);
    assert.equal(parseBytes('10 MB'), 10e6);
    assert.equal(parseBytes('1.54 kB'), 1540);
    assert.equal(parseBytes('512KiB'), 512 * 1024);
    assert.equal(parseBytes('42'), 42);
    assert.equal(formatBytes(500e9), '500 GB');
    assert.equal(formatBytes(1536), '1.54 kB');
    assert.equal(formatBytes(12), '12 B');
    assert.equal(formatBytes(0), '0 B');
  });

  test('bytes: bad input names the problem', () => {
    assert.equal(
      message(() => parseBytes('lots')),
      'use an amount such as 500GB, 10MB or 512KiB',
    );
    assert.equal(
      message(() => parseBytes('10mb')),
      'the unit "mb" is ambiguous: write mB for bytes or mbit for bits; use an amount such as 500GB, 10MB or 512KiB',
    );
    assert.match(
      message(() => parseBytes('10Mbit')),
      /^give an amount in bytes/,
    );
    assert.match(
      message(() => parseBytes('10MB/s')),
      /^use an amount/,
    );
  });

  test('rates: bytes and bits per second; written decimal', () => {
    assert.equal(parseRate('10MB/s'), 10e6);
    assert.equal(parseRate('512KiB/s'), 512 * 1024);
    assert.equal(parseRate('100Mbit/s'), 12.5e6);
    assert.equal(parseRate('100Mbps'), 12.5e6);
    assert.equal(parseRate('0MB/s'), 0);
    assert.equal(parseRate('0.001B/s'), 1);
    assert.equal(formatRate(10e6), '10 MB/s');
    assert.equal(formatRate(1536), '1.54 kB/s');
    assert.equal(
      message(() => parseRate('10MB')),
      'a rate needs "/s"; use a rate such as 10MB/s, 500KB/s or 100Mbit/s (0 or "off" for no cap)',
    );
    assert.match(
      message(() => parseRate('10MB/month')),
      /^"\/month" is not per second; use a rate/,
    );
    assert.match(
      message(() => parseRate('10XB/s')),
      /^unknown unit "XB"; use a rate/,
    );
  });

  test('what is written reads back within the three digits shown', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 9e15 }), (n) => {
        const back = parseBytes(formatBytes(n));
        assert.ok(Math.abs(back - n) <= Math.max(0.5, n * 0.005), `${n} → ${formatBytes(n)} → ${back}`);
        const rate = parseRate(formatRate(n));
        assert.ok(Math.abs(rate - n) <= Math.max(1, n * 0.005));
      }),
    );
  });

  test('durations', () => {
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('60s'), 60_000);
    assert.equal(parseDuration('5m'), 300_000);
    assert.equal(parseDuration('8h'), 8 * 3_600_000);
    assert.equal(parseDuration('2d'), 2 * 86_400_000);
    assert.equal(parseDuration(30), 30_000);
    assert.equal(parseDuration('soon'), null);
    assert.equal(parseDuration('-1s'), null);
    assert.equal(parseDuration(-1), null);
    assert.equal(formatDuration(2_000), '2 s');
    assert.equal(formatDuration(40_000), '40 s');
    assert.equal(formatDuration(15 * 60_000), '15 minutes');
    assert.equal(formatDuration(3 * 3_600_000), '3 hours');
    assert.equal(formatPeriod('month'), 'per month');
    assert.equal(formatPeriod('1d'), 'per day');
    assert.equal(formatPeriod('30d'), 'per 30 days');
  });
});
