import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock } from '../../../../test/helpers/core.js';
import { silentLogger } from '../../../log/index.js';
import { upstreamCredential } from './index.js';

describe('http-proxy upstream credential header', () => {
  const clock = new FakeClock();
  const log = silentLogger();
  it('builds Basic, Bearer and custom header values', () => {
    const basic = upstreamCredential(
      { type: 'basic', username: 'AWS', source: { kind: 'static', value: 'pw' } },
      clock,
      log,
    );
    assert.equal(basic.headerName, 'authorization');
    assert.equal(basic.value(), `Basic ${Buffer.from('AWS:pw').toString('base64')}`);
    const bearer = upstreamCredential(
      { type: 'bearer', source: { kind: 'static', value: 'tok' } },
      clock,
      log,
    );
    assert.equal(bearer.value(), 'Bearer tok');
    const header = upstreamCredential(
      { type: 'header', name: 'x-api-key', source: { kind: 'static', value: 'k' } },
      clock,
      log,
    );
    assert.equal(header.headerName, 'x-api-key');
    assert.equal(header.value(), 'k');
  });

  it('refuses a value with a line break (it would split the header)', () => {
    const c = upstreamCredential(
      { type: 'bearer', source: { kind: 'static', value: 'a\r\nX-Evil: 1' } },
      clock,
      log,
    );
    assert.throws(() => c.value(), /line break/);
  });
});
