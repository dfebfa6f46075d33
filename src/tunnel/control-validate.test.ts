import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cleanText } from '../core/ids.js';
import { JsonLineDecoder } from './control-protocol.js';
import { checkRepoMeta } from './control-validate.js';
import { normalizeIp } from './session-util.js';

describe('control intake', () => {
  test('repository metadata: good values pass, each bad field is named', () => {
    assert.deepEqual(checkRepoMeta({ service: 'smb', host: 'files.corp', port: 445 }), {
      ok: true,
      meta: { service: 'smb', scheme: null, host: 'files.corp', dest_port: 445, path: null },
    });
    assert.equal(checkRepoMeta({ service: 'ssh', host: 'fe80::1', port: 22 }).ok, true);
    assert.equal(
      checkRepoMeta({ service: 'webdav', scheme: 'https', host: '10.0.0.1', port: 443, path: '/dav' }).ok,
      true,
    );
    const field = (m: Record<string, unknown>) => {
      const r = checkRepoMeta(m);
      return r.ok ? 'ok' : r.field;
    };
    assert.equal(field({ service: 'http', host: 'a\rb', port: 80 }), 'host');
    assert.equal(field({ service: 'http', host: '', port: 80 }), 'host');
    assert.equal(field({ service: 'http', host: 5, port: 80 }), 'host');
    assert.equal(field({ service: 'http', host: 'h', port: 0 }), 'port');
    assert.equal(field({ service: 'http', host: 'h', port: 65536 }), 'port');
    assert.equal(field({ service: 'http', host: 'h', port: 80, path: 'relative' }), 'path');
    assert.equal(field({ service: 'http', host: 'h', port: 80, path: '/\u202eevil' }), 'path');
    assert.equal(field({ service: 'toString', host: 'h', port: 80 }), 'service');
    assert.equal(field({ service: 'http', scheme: 'https', host: 'h', port: 80 }), 'scheme');
  });

  test('free text is cleaned and bounded (the CLI escapes what it prints: src/cli/table.test.ts)', () => {
    assert.equal(cleanText('a\x1b[2Jb\x07', 100), 'a?[2Jb?');
    assert.equal(cleanText('x'.repeat(500), 10).length, 10);
  });

  test('source addresses: IPv4-mapped IPv6 is the IPv4 address', () => {
    assert.equal(normalizeIp('::ffff:127.0.0.2'), '127.0.0.2');
    assert.equal(normalizeIp('::FFFF:10.1.2.3'), '10.1.2.3');
    assert.equal(normalizeIp('2001:DB8::1'), '2001:db8::1');
    assert.equal(normalizeIp(undefined), 'unknown');
  });

  test('control lines: an over-long line is reported once and skipped to its end; buffering stays bounded', () => {
    const msgs: unknown[] = [];
    const bad: string[] = [];
    const d = new JsonLineDecoder(
      (m) => msgs.push(m),
      (why) => bad.push(why),
      100,
    );
    d.push('{"type":"a"}\n');
    for (let i = 0; i < 50; i++) d.push('x'.repeat(64));
    d.push('yyy\n{"type":"b"}\n{"type":');
    d.push('"c"}\n');
    d.push(`${'z'.repeat(150)}\n{"type":"d"}\n`);
    assert.deepEqual(
      msgs.map((m) => (m as { type: string }).type),
      ['a', 'b', 'c', 'd'],
    );
    assert.deepEqual(bad, ['control line longer than 100 bytes', 'control line longer than 100 bytes']);
    d.push('[1]\nnot json\n');
    assert.deepEqual(bad.slice(2), ['control message without a "type"', 'control line is not JSON']);
  });
});
