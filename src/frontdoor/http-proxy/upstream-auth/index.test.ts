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

describe('http-proxy upstream credential validation', () => {
  const clock = new FakeClock();
  const log = silentLogger();
  it('refuses a byte that is not valid in a header value with a 502 error that names it, never the value', () => {
    const c = upstreamCredential(
      { type: 'bearer', source: { kind: 'static', value: 'tok\u0001en' } },
      clock,
      log,
    );
    assert.throws(
      () => c.value(),
      (e: Error & { code?: string; status?: number }) =>
        e.code === 'UPSTREAM_CREDENTIAL_INVALID' &&
        e.status === 502 &&
        /U\+0001 at position 4/.test(e.message) &&
        !e.message.includes('tok'),
    );
    const euro = upstreamCredential(
      { type: 'header', name: 'x-api-key', source: { kind: 'static', value: 'k€y' } },
      clock,
      log,
    );
    assert.throws(() => euro.value(), /U\+20AC/);
    // Basic sends base64: any password is a valid header value.
    const basic = upstreamCredential(
      { type: 'basic', username: 'u', source: { kind: 'static', value: 'pä\u0001ss' } },
      clock,
      log,
    );
    assert.match(basic.value(), /^Basic [A-Za-z0-9+/=]+$/);
  });
});
