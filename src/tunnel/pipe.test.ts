import assert from 'node:assert/strict';
import net from 'node:net';
import { PassThrough, Writable } from 'node:stream';
import { test } from 'node:test';
import { coalesceWrites, pump, RELAY_BACKLOG, relay } from './pipe.js';

test('pump: reports once, after the source ended and the destination finished', async () => {
  const src = new PassThrough();
  const dst = new PassThrough();
  const got: Buffer[] = [];
  dst.on('data', (c: Buffer) => got.push(c));
  const result = new Promise<Error | undefined>((r) => pump(src, dst, r));
  src.write('hello ');
  src.end('world');
  assert.equal(await result, undefined);
  assert.equal(Buffer.concat(got).toString(), 'hello world');
});

test('pump: a source closed before its end is a premature close; an error is reported as is', async () => {
  const a = new PassThrough();
  const r1 = new Promise<Error | undefined>((r) => pump(a, new PassThrough(), r));
  a.destroy();
  assert.equal((await r1)?.message, 'premature close');
  const b = new PassThrough();
  const r2 = new Promise<Error | undefined>((r) => pump(new PassThrough(), b, r));
  b.destroy(new Error('boom'));
  assert.equal((await r2)?.message, 'boom');
});

test('relay over real sockets: a half-close passes through, the answer still arrives, bytes are counted', async () => {
  // An echo server that answers after the caller's EOF (the way a half-closing client is served).
  const echo = net.createServer({ allowHalfOpen: true }, (s) => {
    const parts: Buffer[] = [];
    s.on('data', (c: Buffer) => parts.push(c));
    s.on('end', () => s.end(Buffer.concat(parts).toString().toUpperCase()));
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  let result: Promise<{ aToB: number; bToA: number; error?: Error }> | undefined;
  const front = net.createServer({ allowHalfOpen: true }, (a) => {
    coalesceWrites(a);
    const b = net.connect({
      port: (echo.address() as net.AddressInfo).port,
      host: '127.0.0.1',
      allowHalfOpen: true,
    });
    coalesceWrites(b);
    result = new Promise((r) => relay(a, b, r));
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', () => r()));
  const c = net.connect({
    port: (front.address() as net.AddressInfo).port,
    host: '127.0.0.1',
    allowHalfOpen: true,
  });
  const answer = new Promise<string>((resolve) => {
    const parts: Buffer[] = [];
    c.on('data', (d: Buffer) => parts.push(d));
    c.on('end', () => resolve(Buffer.concat(parts).toString()));
  });
  c.write('abc');
  c.end('def');
  assert.equal(await answer, 'ABCDEF');
  const r = await result!;
  assert.deepEqual({ aToB: r.aToB, bToA: r.bToA, error: r.error }, { aToB: 6, bToA: 6, error: undefined });
  c.destroy();
  front.close();
  echo.close();
});

test("coalesceWrites: what a stream writes on 'prefinish' and on 'finish' (an SSH channel's EOF and CLOSE) leaves in one writev", async () => {
  const server = net.createServer((s) => s.resume());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const sock = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1' });
  await new Promise((r) => sock.once('connect', r));
  coalesceWrites(sock);
  // The socket's system calls, seen where node's stream hands them over (one chunk, or several).
  const calls: string[] = [];
  const proto = Object.getPrototypeOf(sock) as net.Socket & {
    _write: (...a: unknown[]) => void;
    _writev: (...a: unknown[]) => void;
  };
  const s = sock as unknown as typeof proto;
  s._write = (...a: unknown[]) => {
    calls.push('write');
    proto._write.apply(sock, a);
  };
  s._writev = (chunks: unknown, cb: unknown) => {
    calls.push(`writev x${(chunks as unknown[]).length}`);
    proto._writev.call(sock, chunks, cb);
  };
  // A channel that ends: ssh2 sends EOF on 'prefinish', a relay sends CLOSE on 'finish', which the
  // stream emits in a tick it queues after the tick that wrote the EOF.
  const channel = new Writable({ write: (_c, _e, cb) => cb() });
  channel.once('prefinish', () => sock.write('EOF'));
  const finished = new Promise<void>((r) =>
    channel.once('finish', () => {
      sock.write('CLOSE');
      r();
    }),
  );
  channel.end();
  await finished;
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(calls, ['writev x2']);
  sock.destroy();
  server.close();
});

test('pump: a destination that keeps up never pauses its source; a stalled one stops it within RELAY_BACKLOG', async () => {
  const chunk = Buffer.alloc(64 * 1024, 7);
  // keeps up: every write completes at once, but each 64 KiB write is beyond the 16 KiB highWaterMark
  const fastSrc = new PassThrough({ highWaterMark: 1024 * 1024 });
  let pauses = 0;
  fastSrc.on('pause', () => pauses++);
  let got = 0;
  const fastDst = new Writable({
    highWaterMark: 16 * 1024,
    write(c: Buffer, _e, cb) {
      got += c.length;
      setImmediate(cb);
    },
  });
  const fastDone = new Promise<Error | undefined>((r) => pump(fastSrc, fastDst, r));
  for (let i = 0; i < 16; i++) {
    fastSrc.write(chunk);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
  }
  fastSrc.end();
  assert.equal(await fastDone, undefined);
  assert.equal(got, 16 * chunk.length);
  assert.equal(pauses, 0, 'no pause while the destination keeps up');

  // stalled: nothing completes until released
  const src = new PassThrough({ highWaterMark: 4 * 1024 * 1024 });
  const held: Array<() => void> = [];
  const out: Buffer[] = [];
  let peak = 0;
  const dst = new Writable({
    highWaterMark: 16 * 1024,
    write(c: Buffer, _e, cb) {
      out.push(c);
      held.push(cb);
    },
  });
  const done = new Promise<Error | undefined>((r) => pump(src, dst, r));
  for (let i = 0; i < 32; i++) src.write(Buffer.alloc(chunk.length, i));
  src.end();
  await new Promise((r) => setImmediate(r));
  peak = Math.max(peak, dst.writableLength);
  assert.ok(src.isPaused(), 'the source is paused');
  assert.ok(peak <= RELAY_BACKLOG + chunk.length, `at most RELAY_BACKLOG + one chunk queued (${peak})`);
  while (!(await Promise.race([done.then(() => true), new Promise((r) => setImmediate(() => r(false)))]))) {
    peak = Math.max(peak, dst.writableLength);
    for (const cb of held.splice(0)) cb();
  }
  assert.ok(peak <= RELAY_BACKLOG + chunk.length, `at most RELAY_BACKLOG + one chunk queued (${peak})`);
  const all = Buffer.concat(out);
  assert.equal(all.length, 32 * chunk.length);
  for (let i = 0; i < 32; i++) assert.equal(all[i * chunk.length], i, 'in order');
});
