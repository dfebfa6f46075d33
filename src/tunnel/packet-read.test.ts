import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { type AddressInfo, connect, createServer, type Server as NetServer, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { test } from 'node:test';
import type ssh2 from 'ssh2';
import { ssh2Pair } from '../../test/helpers/ssh2-pair.js';
import { dialDestination } from './dial.js';
import {
  IN_PLACE_MIN,
  PACKET_READ_SIZE,
  PACKET_ROOM,
  packetReaderOf,
  packetRoom,
  readIntoPackets,
} from './packet-read.js';
import { RELAY_BACKLOG, type RelayResult, relay } from './pipe.js';

const require = createRequire(import.meta.url);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('the ssh2 patch sends data laid out as a packet in place (patches/ssh2+*.patch)', () => {
  const fs = require('node:fs') as typeof import('node:fs');
  const read = (f: string) => fs.readFileSync(require.resolve(`ssh2/lib/${f}`), 'utf8');
  assert.match(read('Channel.js'), /const PACKET_ROOM = Symbol\.for\('tether\.packetRoom'\);/);
  assert.match(read('Channel.js'), /p \+ sliceLen === len && sendInPlace\(protocol, id, data, p, sliceLen\)/);
  assert.match(read('protocol/Protocol.js'), /channelDataInPlace\(chan, buf, dataLen\) \{/);
  assert.match(read('protocol/crypto.js'), /function sealChannelData\(cipher, block, buf, chan, dataLen\)/);
  assert.equal(PACKET_ROOM, Symbol.for('tether.packetRoom'));
});

/** An ssh2 server and client on loopback with one direct-tcpip channel, both sides on `cipher`. */
async function pair(cipher: string) {
  const {
    client,
    conn: serverConn,
    serverCh,
    clientCh,
    close,
  } = await ssh2Pair({
    channel: 'tcpip',
    server: { algorithms: { cipher: [cipher] } },
    client: { algorithms: { cipher: [cipher] as ssh2.CipherAlgorithm[] } },
  });
  const received: Buffer[] = [];
  let receivedBytes = 0;
  clientCh.on('data', (d: Buffer) => {
    received.push(d);
    receivedBytes += d.length;
  });
  return {
    client,
    serverConn,
    serverCh,
    /** Resolves with everything the client has read once it read `n` bytes. */
    async read(n: number): Promise<Buffer> {
      while (receivedBytes < n) await once(clientCh, 'data');
      const all = Buffer.concat(received);
      received.length = 0;
      receivedBytes = 0;
      return all;
    },
    close,
  };
}

/** `data` copied into a packet room; the view, and whether it was encrypted where it lies. */
function inRoom(data: Buffer) {
  const view = packetRoom(data.length);
  data.copy(view);
  return { view, changed: () => !view.equals(data) };
}

for (const cipher of ['aes128-gcm@openssh.com', 'chacha20-poly1305@openssh.com']) {
  test(`${cipher}: data in a packet room is encrypted where it lies, and arrives intact (one packet, split, small)`, async () => {
    const p = await pair(cipher);
    try {
      // one packet; more than a packet (the first 128 KiB copied, the rest in place); a few bytes
      for (const size of [40_000, 300_000, 100]) {
        const data = randomBytes(size);
        const r = inRoom(data);
        p.serverCh.write(r.view);
        assert.equal(sha(await p.read(size)), sha(data), `${size} bytes arrive intact`);
        assert.ok(r.changed(), `${size} bytes: sent in place (the room now holds ciphertext)`);
      }
      // an ordinary Buffer is copied as before: its bytes stay as they were
      const plain = randomBytes(50_000);
      const before = Buffer.from(plain);
      p.serverCh.write(plain);
      assert.equal(sha(await p.read(plain.length)), sha(before));
      assert.ok(plain.equals(before), 'an unmarked buffer was written over');
    } finally {
      p.close();
    }
  });
}

test('aes256-ctr (a cipher that does not encrypt in place) and a key exchange in progress: the data is copied, intact', async () => {
  const ctr = await pair('aes256-ctr');
  try {
    const data = randomBytes(100_000);
    const r = inRoom(data);
    ctr.serverCh.write(r.view);
    assert.equal(sha(await ctr.read(data.length)), sha(data));
    assert.ok(!r.changed(), 'sent in place with a cipher whose packets are laid out otherwise');
  } finally {
    ctr.close();
  }
  const gcm = await pair('aes128-gcm@openssh.com');
  try {
    // a key exchange starts; what the server sends meanwhile is queued as it is
    const rekeyed = new Promise<void>((resolve, reject) =>
      (gcm.serverConn as unknown as { rekey(cb: (err?: Error) => void): void }).rekey((err) =>
        err ? reject(err) : resolve(),
      ),
    );
    const chunks = Array.from({ length: 20 }, () => randomBytes(IN_PLACE_MIN + 1000));
    const rooms = chunks.map(inRoom);
    for (const r of rooms) gcm.serverCh.write(r.view);
    const all = Buffer.concat(chunks);
    assert.equal(sha(await gcm.read(all.length)), sha(all), 'every byte arrives, in order, across the rekey');
    await rekeyed;
    assert.ok(
      rooms.some((r) => !r.changed()),
      'nothing was queued during the key exchange',
    );
  } finally {
    gcm.close();
  }
});

/** A TCP server that greets each connection with `banner`, then sends `body` and ends. */
async function talker(banner: Buffer, body: Buffer): Promise<{ server: NetServer; port: number }> {
  const server = createServer((s) => {
    s.on('error', () => {});
    s.write(banner);
    s.end(body);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port };
}

test('a dialled socket reads into packet rooms: what arrives before the relay is kept in order, large reads keep their room, a slow reader pauses it', async () => {
  const banner = Buffer.from('220 hello\r\n');
  const body = randomBytes(8 * 1024 * 1024);
  const t = await talker(banner, body);
  try {
    const sock = await dialDestination('127.0.0.1', t.port, 10_000);
    const reader = packetReaderOf(sock);
    assert.ok(reader, 'the socket reads into packets');
    // the banner arrives before anything relays it: kept, and the socket paused
    const deadline = Date.now() + 15_000;
    while (reader.waiting === 0) {
      assert.ok(Date.now() < deadline, 'nothing was read before the relay');
      await new Promise((r) => setImmediate(r));
    }
    const got: Buffer[] = [];
    let rooms = 0;
    let most = 0;
    // a slow reader: one chunk per event-loop turn
    const slow = new Duplex({
      highWaterMark: 16 * 1024,
      read() {},
      write(chunk: Buffer, _enc, cb) {
        got.push(Buffer.from(chunk));
        if ((chunk.buffer as unknown as Record<symbol, boolean>)[PACKET_ROOM]) rooms++;
        most = Math.max(most, slow.writableLength);
        setImmediate(cb);
      },
    });
    slow.push(null); // nothing comes back
    const r = await new Promise<RelayResult>((resolve) => relay(sock, slow, resolve));
    assert.equal(r.error, undefined);
    assert.equal(r.aToB, banner.length + body.length);
    assert.equal(r.bToA, 0);
    assert.equal(
      sha(Buffer.concat(got)),
      sha(Buffer.concat([banner, body])),
      'every byte, in order, banner first',
    );
    assert.ok(rooms > 0, 'no large read kept its packet room');
    assert.ok(
      most <= RELAY_BACKLOG + PACKET_READ_SIZE + 1024,
      `the slow reader was given ${most} bytes at once`,
    );
  } finally {
    t.server.close();
  }
});

test('sockets reading short pieces at once share one scratch buffer: each gets its own bytes, in order', async () => {
  // each server writes many short pieces, spaced by event-loop turns, so reads interleave
  const servers = await Promise.all(
    ['a', 'b', 'c'].map(async (tag) => {
      const pieces = Array.from({ length: 300 }, (_, i) => Buffer.from(`${tag}${i}:${'x'.repeat(i % 97)};`));
      // the relay half-closes towards it at once (the sink sends nothing): keep writing
      const server = createServer({ allowHalfOpen: true }, (s) => {
        s.on('error', () => {});
        let i = 0;
        const next = () => {
          if (i === pieces.length) {
            s.end();
            return;
          }
          s.write(pieces[i++]!);
          setImmediate(next);
        };
        next();
      });
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      return { server, port: (server.address() as AddressInfo).port, expected: Buffer.concat(pieces) };
    }),
  );
  try {
    const results = await Promise.all(
      servers.map(async (t) => {
        const sock = await dialDestination('127.0.0.1', t.port, 10_000);
        const got: Buffer[] = [];
        const sink = new Duplex({
          read() {},
          write(chunk: Buffer, _enc, cb) {
            got.push(chunk);
            cb();
          },
        });
        sink.push(null);
        await new Promise<RelayResult>((resolve) => relay(sock, sink, resolve));
        return Buffer.concat(got);
      }),
    );
    for (const [i, t] of servers.entries()) assert.equal(results[i]!.toString(), t.expected.toString());
  } finally {
    for (const t of servers) t.server.close();
  }
});

test('an accepted caller (a lease port) reads into packet rooms: every byte in order, large reads keep their room, half-close kept', async () => {
  const body = randomBytes(8 * 1024 * 1024);
  let moved!: (s: Socket) => void;
  const accepted = new Promise<Socket>((r) => (moved = r));
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (old) =>
    moved(readIntoPackets(old)),
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const caller = connect((server.address() as AddressInfo).port, '127.0.0.1');
    const sock = await accepted;
    assert.ok(packetReaderOf(sock), 'the socket reads into packets');
    assert.equal(sock.allowHalfOpen, true, 'half-open as the listener accepts');
    const got: Buffer[] = [];
    let rooms = 0;
    const sink = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        got.push(Buffer.from(chunk));
        if ((chunk.buffer as unknown as Record<symbol, boolean>)[PACKET_ROOM]) rooms++;
        cb();
      },
      final(cb) {
        // the caller half-closed: an answer still reaches it
        sink.push('answer');
        sink.push(null);
        cb();
      },
    });
    const answer: Buffer[] = [];
    caller.on('data', (d: Buffer) => answer.push(d));
    caller.end(body);
    const r = await new Promise<RelayResult>((resolve) => {
      relay(sock, sink, resolve);
      sock.resume();
    });
    assert.equal(r.error, undefined);
    assert.equal(sha(Buffer.concat(got)), sha(body), 'every byte, in order');
    assert.ok(rooms > 0, 'no large read kept its packet room');
    await once(caller, 'close');
    assert.equal(Buffer.concat(answer).toString(), 'answer');
  } finally {
    server.close();
  }
});
