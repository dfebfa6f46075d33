import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { requestFraming } from './framing.js';

describe('http-proxy request framing', () => {
  it('reads Content-Length, chunked and no body', () => {
    assert.deepEqual(requestFraming(['Content-Length', '12'], '1.1'), { kind: 'length', length: 12 });
    assert.deepEqual(requestFraming(['Content-Length', '0'], '1.1'), { kind: 'none' });
    assert.deepEqual(requestFraming(['Transfer-Encoding', 'Chunked'], '1.1'), { kind: 'chunked' });
    assert.deepEqual(requestFraming(['Host', 'a'], '1.0'), { kind: 'none' });
  });

  it('refuses a Connection header that names a framing header', () => {
    for (const name of ['content-length', 'Transfer-Encoding', ' HOST ']) {
      const r = requestFraming(['Connection', `keep-alive, ${name}`, 'Content-Length', '3'], '1.1');
      assert.equal(typeof r, 'string', name);
      assert.match(r as string, /Connection header may not name/);
    }
    assert.match(requestFraming(['Proxy-Connection', 'content-length'], '1.1') as string, /may not name/);
    assert.deepEqual(requestFraming(['Connection', 'close, x-trace'], '1.1'), { kind: 'none' });
  });

  it('refuses transfer codings other than one "chunked", chunked on HTTP/1.0, and duplicate lengths', () => {
    assert.match(requestFraming(['Transfer-Encoding', 'gzip, chunked'], '1.1') as string, /single/);
    assert.match(
      requestFraming(['Transfer-Encoding', 'identity', 'Transfer-Encoding', 'chunked'], '1.1') as string,
      /single/,
    );
    assert.match(requestFraming(['Transfer-Encoding', 'chunked'], '1.0') as string, /HTTP\/1\.0/);
    assert.match(
      requestFraming(['Content-Length', '1', 'content-length', '1'], '1.1') as string,
      /more than one/,
    );
    assert.match(
      requestFraming(['Content-Length', '1', 'Transfer-Encoding', 'chunked'], '1.1') as string,
      /together/,
    );
    assert.match(requestFraming(['Content-Length', '1e3'], '1.1') as string, /decimal/);
  });
});
