import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { TetherError } from '../errors/index.js';
import { closeControl, controlRequest, listenControl, socketPath } from './control-socket.js';

describe('control socket', () => {
  const base = mkdtempSync(join(tmpdir(), 'tether-cs-'));
  after(() => rmSync(base, { recursive: true, force: true }));

  test('answers commands; errors come back as TetherErrors with their code', async () => {
    const dir = join(base, 'a');
    const server = await listenControl(dir, async (cmd) => {
      if (cmd === 'status') return { hello: 'world' };
      throw new TetherError('CONFIG_INVALID', 'bad file', { status: 400 });
    });
    try {
      assert.equal(statSync(socketPath(dir)).mode & 0o777, 0o600);
      assert.deepEqual(await controlRequest(dir, 'status'), { hello: 'world' });
      await assert.rejects(controlRequest(dir, 'reload'), (e: unknown) => {
        assert.ok(e instanceof TetherError);
        assert.equal(e.code, 'CONFIG_INVALID');
        assert.equal(e.status, 400);
        assert.equal(e.message, 'bad file');
        return true;
      });
      // a second connector on the same state dir is refused
      await assert.rejects(
        listenControl(dir, async () => null),
        /another connector is already running/,
      );
    } finally {
      await closeControl(server, dir);
    }
    await assert.rejects(
      controlRequest(dir, 'status'),
      (e: unknown) => (e as TetherError).code === 'CONNECTOR_NOT_RUNNING',
    );
  });

  test('a socket left behind by a crash is replaced', async () => {
    const dir = join(base, 'b');
    const first = await listenControl(dir, async () => 1);
    // simulate kill -9: the server goes away, the socket file stays
    await new Promise<void>((r) => first.close(() => r()));
    const stale = createServer();
    await new Promise<void>((r) => stale.listen(socketPath(dir), () => r()));
    await new Promise<void>((r) => stale.close(() => r()));
    const server = await listenControl(dir, async () => 2);
    try {
      assert.equal(await controlRequest(dir, 'status'), 2);
    } finally {
      await closeControl(server, dir);
    }
  });
});
