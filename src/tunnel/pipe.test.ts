import assert from 'node:assert/strict';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { coalesceWrites, pump, relay } from './pipe.js';

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
