import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isLoopback } from './index.js';

test('metrics_listen: loopback addresses pass quietly, any other bound address is warned about', () => {
  for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1']) assert.equal(isLoopback(a), true, a);
  for (const a of ['0.0.0.0', '::', '10.0.0.5', '192.168.1.2', 'fe80::1', '::ffff:10.0.0.1', '1.127.0.0'])
    assert.equal(isLoopback(a), false, a);
});
