import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { buildProxyHeader } from './proxy-header-out.js';
import './proxy-header.js';

const require = createRequire(import.meta.url);
const loaded = () => Object.keys(require.cache).some((k) => k.includes('/node_modules/proxy-protocol-js/'));

test('proxy-protocol-js is loaded by the first PROXY header only, not by the modules that use it', () => {
  assert.equal(loaded(), false, 'importing the PROXY protocol modules loads no parser');
  const v1 = buildProxyHeader(
    'v1',
    { address: '192.0.2.7', port: 40000 },
    { address: '10.0.0.5', port: 445 },
  );
  assert.equal(v1.toString('latin1'), 'PROXY TCP4 192.0.2.7 10.0.0.5 40000 445\r\n');
  assert.equal(loaded(), true);
});
