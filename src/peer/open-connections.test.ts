import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { allEmpty, OpenConnections } from './open-connections.js';

const settled = async (p: Promise<void>) => {
  let done = false;
  void p.then(() => {
    done = true;
  });
  await new Promise((r) => setImmediate(r));
  return done;
};

test('a connection is counted until it closes; whenEmpty waits for the last of several sets', async () => {
  const a = new OpenConnections();
  const b = new OpenConnections();
  assert.equal(await settled(allEmpty([a, b])), true);
  const [s1, s2, s3] = [new PassThrough(), new PassThrough(), new PassThrough()];
  a.add(s1);
  a.add(s1);
  a.add(s2);
  b.add(s3);
  assert.equal(a.size, 2);
  const empty = allEmpty([a, b]);
  s1.destroy();
  s3.destroy();
  assert.equal(await settled(empty), false, 'resolved with a connection open');
  // a connection added to an emptied set while waiting is waited for too
  const s4 = new PassThrough();
  b.add(s4);
  s2.destroy();
  assert.equal(await settled(empty), false);
  s4.destroy();
  assert.equal(await settled(empty), true);
  assert.equal(a.size + b.size, 0);
  const dead = new PassThrough();
  dead.destroy();
  a.add(dead);
  assert.equal(a.size, 0, 'a destroyed stream is not counted');
});
