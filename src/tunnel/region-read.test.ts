import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import net from 'node:net';
import { test } from 'node:test';
import tls from 'node:tls';
import type ssh2 from 'ssh2';
import { ssh2Pair } from '../../test/helpers/ssh2-pair.js';
import { sniff } from '../../test/helpers/util.js';
import { adoptOrigin } from './proxy-header.js';
import { moveToOnread, REGION_SIZE, readIntoRegions } from './region-read.js';

const require = createRequire(import.meta.url);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

type Join = (packet: Uint8Array | null, have: number, part: Uint8Array, len: number) => Uint8Array;
type PayloadOf = (packet: Uint8Array) => Buffer;
const { tetherJoinPacket: joinPacket, tetherPayloadOf: payloadOf } =
  require('ssh2/lib/protocol/crypto.js') as {
    tetherJoinPacket: Join;
    tetherPayloadOf: PayloadOf;
  };

test('joinPacket (ssh2 patch): adjacent parts become one view, others are copied', () => {
  assert.equal(typeof joinPacket, 'function', 'the ssh2 patch exports joinPacket');
  const region = randomBytes(100);
  const first = new Uint8Array(region.buffer, region.byteOffset + 10, 30);
  assert.equal(joinPacket(null, 0, first, 50), first, 'the first part is kept as it is');
  const next = new Uint8Array(region.buffer, region.byteOffset + 40, 20);
  const joined = joinPacket(first, 30, next, 50);
  assert.equal(joined.buffer, region.buffer, 'adjacent: a view of the same memory, not a copy');
  assert.equal(joined.byteOffset, region.byteOffset + 10);
  assert.equal(joined.length, 50);

  const elsewhere = randomBytes(20);
  const copied = joinPacket(first, 30, elsewhere, 50);
  assert.notEqual(copied.buffer, region.buffer, 'not adjacent: copied');
  assert.deepEqual(Buffer.from(copied), Buffer.concat([Buffer.from(first), elsewhere]));
  // a part from another buffer that happens to sit at the right offset is not adjacent
  const other = Buffer.alloc(200);
  const lookalike = new Uint8Array(other.buffer, region.byteOffset + 40, 20);
  assert.notEqual(joinPacket(first, 30, lookalike, 50).buffer, region.buffer);

  // a packet already copied into its own buffer takes the rest in place
  const own = Buffer.alloc(50);
  own.set(first, 0);
  const third = randomBytes(20);
  assert.equal(joinPacket(own, 30, third, 50), own);
  assert.deepEqual(own.subarray(30), third);
});

test('payloadOf (ssh2 patch): a small payload is copied out of a large buffer, a large one stays a view', () => {
  const region = Buffer.alloc(REGION_SIZE);
  // a packet: padding length 4, then the payload, then the padding
  const packet = (at: number, payload: number) => {
    region[at] = 4;
    region.fill(7, at + 1, at + 1 + payload);
    return new Uint8Array(region.buffer, region.byteOffset + at, 1 + payload + 4);
  };
  const big = payloadOf(packet(1000, 128 * 1024));
  assert.equal(big.buffer, region.buffer, '128 KiB in a 1 MiB region: a view');
  assert.equal(big.length, 128 * 1024);
  const small = payloadOf(packet(200_000, 1000));
  assert.notEqual(small.buffer, region.buffer, '1,000 bytes in a 1 MiB region: copied');
  assert.deepEqual(small, Buffer.alloc(1000, 7));
  const own = Buffer.alloc(1 + 100 + 4);
  own[0] = 4;
  assert.equal(payloadOf(own).buffer, own.buffer, 'a packet in a buffer of its own: a view');
});

/** A listener whose connections go through readIntoRegions; resolves the socket it made. */
async function regionServer() {
  const made: { old: net.Socket; s: net.Socket }[] = [];
  let arrived!: (x: { old: net.Socket; s: net.Socket }) => void;
  const next = () => new Promise<{ old: net.Socket; s: net.Socket }>((r) => (arrived = r));
  let waiting = next();
  let before: (old: net.Socket) => Promise<void> | void = () => {};
  const server = net.createServer({ pauseOnConnect: true }, async (old) => {
    await before(old);
    const s = readIntoRegions(old);
    made.push({ old, s });
    arrived({ old, s });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    server,
    port,
    made,
    setBefore(f: typeof before) {
      before = f;
    },
    async accept() {
      const x = await waiting;
      waiting = next();
      return x;
    },
  };
}

test('readIntoRegions: a bulk stream is read into adjacent views of large regions, intact and in order', async (t) => {
  const srv = await regionServer();
  t.after(() => srv.server.close());
  const client = net.connect(srv.port, '127.0.0.1');
  const data = randomBytes(16 * 1024 * 1024);
  const { old, s } = await srv.accept();
  assert.notEqual(s, old, 'a plain TCP socket is moved to a new socket');
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c)).resume();
  client.end(data);
  await once(s, 'end');
  assert.equal(sha(Buffer.concat(chunks)), sha(data), '16 MiB arrive intact');
  const inRegions = chunks.filter((c) => c.buffer.byteLength === REGION_SIZE);
  let adjacent = 0;
  for (let i = 1; i < chunks.length; i++) {
    const a = chunks[i - 1]!;
    const b = chunks[i]!;
    if (a.buffer === b.buffer && a.byteOffset + a.length === b.byteOffset) adjacent++;
  }
  const regionBytes = inRegions.reduce((n, c) => n + c.length, 0);
  assert.ok(regionBytes > data.length * 0.9, `most bytes were read into regions (${regionBytes})`);
  assert.ok(adjacent > 0, 'reads follow each other in a region');
  s.destroy();
});

test('readIntoRegions: short reads are copied out of one shared buffer; sockets do not see each other', async (t) => {
  const srv = await regionServer();
  t.after(() => srv.server.close());
  const a = net.connect(srv.port, '127.0.0.1');
  const sa = (await srv.accept()).s;
  const b = net.connect(srv.port, '127.0.0.1');
  const sb = (await srv.accept()).s;
  const got: Record<string, Buffer[]> = { a: [], b: [] };
  sa.on('data', (c: Buffer) => got.a!.push(c)).resume();
  sb.on('data', (c: Buffer) => got.b!.push(c)).resume();
  for (let i = 0; i < 20; i++) {
    a.write(`a${i};`);
    b.write(`b${i};`);
    await Promise.all([once(sa, 'data'), once(sb, 'data')]);
  }
  const text = (x: Buffer[]) => Buffer.concat(x).toString();
  assert.equal(text(got.a!), Array.from({ length: 20 }, (_, i) => `a${i};`).join(''));
  assert.equal(text(got.b!), Array.from({ length: 20 }, (_, i) => `b${i};`).join(''));
  assert.ok(
    [...got.a!, ...got.b!].every((c) => c.buffer.byteLength !== REGION_SIZE),
    'no region for short reads',
  );
  a.destroy();
  b.destroy();
});

test('readIntoRegions: what the accepted socket had read comes first; its PROXY address is kept; the two close together', async (t) => {
  const srv = await regionServer();
  t.after(() => srv.server.close());
  // the first bytes are read (and put back) before the move, as the tunnel port's sniff does
  srv.setBefore(async (old) => {
    await sniff(old);
    adoptOrigin(old, { address: '198.51.100.7', port: 4242 });
  });
  const client = net.connect(srv.port, '127.0.0.1');
  client.write('first;');
  const { old, s } = await srv.accept();
  assert.notEqual(s, old);
  assert.equal(s.remoteAddress, '198.51.100.7');
  assert.equal(s.remotePort, 4242);
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c)).resume();
  client.write('second;');
  while (Buffer.concat(chunks).length < 'first;second;'.length) await once(s, 'data');
  assert.equal(Buffer.concat(chunks).toString(), 'first;second;');
  // replies go out through the new socket
  s.write('pong');
  const [reply] = (await once(client, 'data')) as [Buffer];
  assert.equal(reply.toString(), 'pong');

  // the listener counts the accepted socket: destroying it closes the connection and the count
  const count = () => new Promise<number>((r, j) => srv.server.getConnections((e, n) => (e ? j(e) : r(n))));
  assert.equal(await count(), 1);
  old.destroy();
  await Promise.all([once(s, 'close'), once(client, 'close')]);
  assert.equal(await count(), 0, 'the listener no longer counts it');
});

test('readIntoRegions: the connection closing from the peer closes both; the listener can close', async () => {
  const srv = await regionServer();
  const client = net.connect(srv.port, '127.0.0.1');
  const { old, s } = await srv.accept();
  s.resume();
  client.end();
  await Promise.all([once(s, 'close'), once(old, 'close')]);
  await new Promise<void>((r) => srv.server.close(() => r()));
});

test('readIntoRegions: a TLS socket and a socket whose peer already ended stay as they are', async (t) => {
  const srv = await regionServer();
  t.after(() => srv.server.close());
  srv.setBefore(async (old) => {
    old.resume();
    await once(old, 'end');
    old.pause();
  });
  const client = net.connect(srv.port, '127.0.0.1');
  client.end('bye');
  const { old, s } = await srv.accept();
  assert.equal(s, old, 'ended: not moved');
  s.destroy();

  const [a, b] = await socketPair();
  const secure = new tls.TLSSocket(a);
  assert.equal(readIntoRegions(secure), secure, 'TLS: not moved');
  secure.destroy();
  a.destroy();
  b.destroy();
});

async function socketPair(): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const c = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const [s] = await accepted;
  await once(c, 'connect');
  server.close();
  return [c, s];
}

for (const cipher of ['aes128-gcm@openssh.com', 'chacha20-poly1305@openssh.com']) {
  test(`${cipher}: packets that span reads in a region are decrypted where they lie (ssh2 patch), intact`, async () => {
    const p = await ssh2Pair({
      channel: 'tcpip',
      server: { algorithms: { cipher: [cipher] } },
      client: { algorithms: { cipher: [cipher] as ssh2.CipherAlgorithm[] } },
      accepted: readIntoRegions,
    });
    try {
      const data = randomBytes(24 * 1024 * 1024);
      const got: Buffer[] = [];
      let n = 0;
      p.serverCh.on('data', (c: Buffer) => {
        got.push(c);
        n += c.length;
      });
      p.clientCh.write(data);
      while (n < data.length) await once(p.serverCh, 'data');
      assert.equal(sha(Buffer.concat(got)), sha(data), '24 MiB arrive intact');
      const inRegion = got
        .filter((c) => c.buffer.byteLength === REGION_SIZE)
        .reduce((s, c) => s + c.length, 0);
      // a packet that crosses into the next region is copied: about one in eight
      assert.ok(inRegion > data.length * 0.6, `most data was decrypted in its region (${inRegion} bytes)`);

      // many small packets, read in large pieces: none keeps a region alive
      got.length = 0;
      n = 0;
      const small = Array.from({ length: 4000 }, () => randomBytes(1000));
      for (const c of small) p.clientCh.write(c);
      while (n < 4_000_000) await once(p.serverCh, 'data');
      assert.equal(sha(Buffer.concat(got)), sha(Buffer.concat(small)), 'the small packets arrive intact');
      const pinning = got.filter((c) => c.buffer.byteLength === REGION_SIZE);
      assert.deepEqual(pinning, [], 'a small payload was left as a view of its region');
    } finally {
      p.close();
    }
  });
}

test('moveToOnread: a socket with a data listener or a write queued stays as it is, its unread data still there', async (t) => {
  const srv = await regionServer();
  t.after(() => srv.server.close());
  srv.setBefore(sniff);
  const client = net.connect(srv.port, '127.0.0.1');
  client.write('early');
  const { s } = await srv.accept();
  const reader = { onread: { buffer: () => Buffer.alloc(1024), callback: () => true }, bind: () => {} };
  const listening = () => {};
  s.on('data', listening);
  assert.equal(moveToOnread(s, reader), s, 'a data listener: not moved');
  s.off('data', listening);
  s.pause();
  s.cork();
  s.write('queued');
  assert.equal(moveToOnread(s, reader), s, 'a write queued: not moved');
  assert.equal(String(s.read()), 'early', 'what it had read is still there');
  s.uncork();
  const [echo] = (await once(client, 'data')) as [Buffer];
  assert.equal(echo.toString(), 'queued');
  client.destroy();
  s.destroy();
});
