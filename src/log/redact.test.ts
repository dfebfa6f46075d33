import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createLogger, withoutUserinfo } from './index.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-redact-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('secrets never reach a log line', () => {
  test('withoutUserinfo: the userinfo of an authority or a URL is replaced, the rest kept', () => {
    assert.equal(withoutUserinfo('acme:KEY@web.grp.acme:443'), '[redacted]@web.grp.acme:443');
    assert.equal(withoutUserinfo('KEY@web.grp.acme'), '[redacted]@web.grp.acme');
    assert.equal(withoutUserinfo('a@b:c@web.grp.acme:443'), '[redacted]@web.grp.acme:443');
    assert.equal(withoutUserinfo('http://u:p@host:8080/x?y=1'), 'http://[redacted]@host:8080/x?y=1');
    assert.equal(withoutUserinfo('HTTP://u:p@host/a@b'), 'HTTP://[redacted]@host/a@b');
    assert.equal(withoutUserinfo('web.grp.acme:443'), 'web.grp.acme:443');
    assert.equal(withoutUserinfo('http://host/path@x'), 'http://host/path@x');
    assert.equal(withoutUserinfo(''), '');
  });

  test('Proxy-Authorization is redacted at the top level and one or two levels down', async () => {
    const file = join(dir, 'log.json');
    const log = createLogger({ level: 'info', destination: file, pretty: false });
    const secret = 'Basic c2VjcmV0LWtleQ==';
    log.info({ 'proxy-authorization': secret, proxyAuthorization: secret }, 'top');
    log.info(
      { req: { 'proxy-authorization': secret, headers: { 'proxy-authorization': secret } } },
      'nested',
    );
    log.info({ headers: { 'proxy-authorization': secret, authorization: secret } }, 'headers');
    log.flush();
    const text = readFileSync(file, 'utf8');
    assert.equal(text.split('\n').filter(Boolean).length, 3, text);
    assert.ok(!text.includes('c2VjcmV0LWtleQ'), text);
    assert.ok(text.includes('[redacted]'));
  });
});
