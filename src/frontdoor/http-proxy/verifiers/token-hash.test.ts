import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hashToken, parseTokenHash, verifyToken } from './token-hash.js';

const FAST = { N: 1024, r: 8, p: 1 };

describe('http-proxy token hashes', () => {
  it('hashes with scrypt and verifies the same token only', async () => {
    const h = await hashToken('tok-1', FAST);
    assert.match(h, /^scrypt\$1024\$8\$1\$[A-Za-z0-9_-]+\$[A-Za-z0-9_-]+$/);
    const parsed = parseTokenHash(h);
    assert.ok(typeof parsed !== 'string');
    assert.equal(await verifyToken('tok-1', parsed), true);
    assert.equal(await verifyToken('tok-2', parsed), false);
  });

  it('salts every hash', async () => {
    assert.notEqual(await hashToken('same', FAST), await hashToken('same', FAST));
  });

  it('explains hashes it cannot use', () => {
    assert.match(
      String(parseTokenHash('$argon2id$v=19$m=65536,t=3,p=4$abc$def')),
      /argon2 hashes are not supported/,
    );
    assert.match(String(parseTokenHash('bcrypt$x')), /not a scrypt hash/);
    assert.match(
      String(parseTokenHash('scrypt$1000$8$1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA')),
      /power of two/,
    );
    assert.match(String(parseTokenHash('scrypt$1024$8$1$c2E$aGFzaGhhc2hoYXNoaGFzaA')), /salt is too short/);
  });
});
