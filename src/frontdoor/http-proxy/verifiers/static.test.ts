import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { FakeClock } from '../../../../test/helpers/core.js';
import { tempDir } from '../../../../test/helpers/util.js';
import { silentLogger } from '../../../log/index.js';
import { parseTokenFile, StaticVerifier } from './static.js';
import { hashToken } from './token-hash.js';

const FAST = { N: 1024, r: 8, p: 1 };

describe('http-proxy static verifier', () => {
  it('parses names, hashes and optional scopes; names bad lines without their hash', async () => {
    const h = await hashToken('t', FAST);
    const text = `# tokens\n\nalice@example.com:${h}\nbob@example.com:${h}:acme/app, acme/tools\nbroken line\nalice@example.com:${h}\ncarol:bcrypt$x\n`;
    const r = parseTokenFile(text);
    assert.deepEqual(
      r.entries.map((e) => [e.name, e.scopes]),
      [
        ['alice@example.com', null],
        ['bob@example.com', ['acme/app', 'acme/tools']],
      ],
    );
    assert.deepEqual(r.problems, [
      'line 5: expected "name:hash" or "name:hash:scope,scope"',
      'line 6: alice@example.com appears twice',
      'line 7: not a scrypt hash (expected scrypt$N$r$p$salt$hash)',
    ]);
  });

  it('verifies e-mail + token, and a bearer token alone', async () => {
    const dir = tempDir();
    const file = join(dir, 'tokens');
    writeFileSync(
      file,
      `alice@example.com:${await hashToken('tok-a', FAST)}:acme/app\nci-bot:${await hashToken('tok-b', FAST)}\n`,
    );
    const v = new StaticVerifier(file, new FakeClock(), silentLogger());
    assert.deepEqual(await v.verify({ username: 'Alice@Example.com', token: 'tok-a' }), {
      ok: true,
      subject: 'alice@example.com',
      scopes: ['acme/app'],
    });
    assert.equal((await v.verify({ username: 'alice@example.com', token: 'tok-b' })).ok, false);
    assert.equal((await v.verify({ username: 'nobody@example.com', token: 'tok-a' })).ok, false);
    assert.deepEqual(await v.verify({ token: 'tok-b' }), { ok: true, subject: 'ci-bot', scopes: null });
    assert.equal((await v.verify({ token: 'nope' })).ok, false);
  });

  it('reloads the file when it changes, and keeps the old table when the new one is bad', async () => {
    const dir = tempDir();
    const file = join(dir, 'tokens');
    writeFileSync(file, `alice@example.com:${await hashToken('old', FAST)}\n`);
    const clock = new FakeClock();
    const v = new StaticVerifier(file, clock, silentLogger());
    const g0 = v.generation();
    writeFileSync(
      file,
      `alice@example.com:${await hashToken('new', FAST)}\nbob@example.com:${await hashToken('b', FAST)}\n`,
    );
    // Checked at most once a second.
    assert.equal(v.generation(), g0);
    clock.advance(1_000);
    assert.ok(v.generation() > g0);
    assert.equal((await v.verify({ username: 'alice@example.com', token: 'old' })).ok, false);
    assert.equal((await v.verify({ username: 'alice@example.com', token: 'new' })).ok, true);
    assert.equal(v.size, 2);
    writeFileSync(file, 'garbage\n');
    clock.advance(1_000);
    const g1 = v.generation();
    assert.equal((await v.verify({ username: 'bob@example.com', token: 'b' })).ok, true);
    assert.equal(v.generation(), g1);
  });

  it('refuses to start on a missing or bad file', async () => {
    const dir = tempDir();
    assert.throws(
      () => new StaticVerifier(join(dir, 'missing'), new FakeClock(), silentLogger()),
      /cannot read token file .*ENOENT/,
    );
    const file = join(dir, 'bad');
    writeFileSync(file, 'alice:nothash\n');
    assert.throws(
      () => new StaticVerifier(file, new FakeClock(), silentLogger()),
      /token file .*line 1: not a scrypt hash/,
    );
  });
});
