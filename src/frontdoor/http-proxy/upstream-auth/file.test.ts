import assert from 'node:assert/strict';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { tempDir } from '../../../../test/helpers/util.js';
import { silentLogger } from '../../../log/index.js';
import { FileSecret } from './file.js';

describe('http-proxy upstream credential from a file', () => {
  it('uses the new value on the request after the file changes (also when replaced by rename)', async () => {
    const dir = tempDir();
    const file = join(dir, 'cred');
    writeFileSync(file, 'v1\n');
    const s = new FileSecret(file, silentLogger());
    await s.start();
    assert.equal(s.current(), 'v1');
    writeFileSync(file, 'v2-longer\n');
    assert.equal(s.current(), 'v2-longer');
    writeFileSync(join(dir, 'tmp'), 'v3\n');
    renameSync(join(dir, 'tmp'), file);
    assert.equal(s.current(), 'v3');
  });

  it('keeps the last good value when the file goes missing or empty', async () => {
    const dir = tempDir();
    const file = join(dir, 'cred');
    writeFileSync(file, 'good');
    const s = new FileSecret(file, silentLogger());
    await s.start();
    writeFileSync(file, '\n');
    assert.equal(s.current(), 'good');
    rmSync(file);
    assert.equal(s.current(), 'good');
    writeFileSync(file, 'back');
    assert.equal(s.current(), 'back');
  });

  it('answers 503 until the file is usable', async () => {
    const dir = tempDir();
    const s = new FileSecret(join(dir, 'missing'), silentLogger());
    await s.start();
    assert.throws(
      () => s.current(),
      (e: Error & { status?: number }) =>
        e.status === 503 && /upstream credential is not available .*ENOENT/.test(e.message),
    );
  });
});
