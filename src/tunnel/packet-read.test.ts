import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { type AddressInfo, connect, createServer, type Server as NetServer, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { test } from 'node:test';
import type ssh2 from 'ssh2';
import { ssh2Pair } from '../../test/helpers/ssh2-pair.js';
import { sniff, waitFor } from '../../test/helpers/util.js';
import { dialDestination } from './dial.js';
import {
  IN_PLACE_MIN,
  PACKET_READ_SIZE,
  PACKET_ROOM,
  PACKET_ROOM_SENT,
  packetReaderOf,
  packetRoom,
  pooledPacketRoom,
  pooledRooms,
  ROOM_POOL_MAX,
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

for (const speaksFirst of [false, true]) {
  test(`an accepted caller (a lease port) reads into packet rooms${speaksFirst ? ', also when it spoke first (read before the move)' : ''}: every byte in order, large reads keep their room, half-close kept`, async () => {
    const body = randomBytes(8 * 1024 * 1024);
    // iperf3's cookie, an HTTP request line: most callers send before they are answered
    const hello = Buffer.from('a cookie of thirty-seven bytes: 12345');
    let moved!: (s: Socket) => void;
    const accepted = new Promise<Socket>((r) => (moved = r));
    let old!: Socket;
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, async (s) => {
      old = s;
      if (speaksFirst) {
        // read before the move, as a first-bytes sniff does
        await sniff(s);
        assert.ok(s.readableLength > 0, 'the caller’s first bytes are buffered in the accepted socket');
      }
      moved(readIntoPackets(s));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const caller = connect((server.address() as AddressInfo).port, '127.0.0.1');
      if (speaksFirst) caller.write(hello);
      const sock = await accepted;
      assert.notEqual(sock, old, 'moved to a socket with a packet reader');
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
      const sent = speaksFirst ? Buffer.concat([hello, body]) : body;
      assert.equal(
        sha(Buffer.concat(got)),
        sha(sent),
        'every byte, in order, what was read before the move first',
      );
      assert.ok(rooms > 0, 'no large read kept its packet room');
      await once(caller, 'close');
      assert.equal(Buffer.concat(answer).toString(), 'answer');
    } finally {
      server.close();
    }
  });
}

type Sent = (err?: unknown) => void;
const sentOf = (room: Buffer) =>
  (room.buffer as unknown as Record<symbol, Sent | undefined>)[PACKET_ROOM_SENT];

/** Takes every room out of the pool, so a test starts from an empty one. */
function drainPool(): void {
  while (pooledRooms() > 0) pooledPacketRoom();
}

test('the ssh2 patch hands a room its packet was sent from in place to the socket write, as the callback (patches/ssh2+*.patch)', () => {
  const fs = require('node:fs') as typeof import('node:fs');
  const read = (f: string) => fs.readFileSync(require.resolve(`ssh2/lib/${f}`), 'utf8');
  assert.match(read('protocol/crypto.js'), /cipher\.encrypt\(packet, buf\.buffer\[PACKET_ROOM_SENT\]\);/);
  assert.match(
    read('protocol/crypto.js'),
    /const PACKET_ROOM_SENT = Symbol\.for\('tether\.packetRoomSent'\);/,
  );
  assert.match(read('protocol/Protocol.js'), /this\._onWrite = \(data, cb\) => \{ onWrite\(data, cb\); \};/);
  assert.match(read('client.js'), /sock\.write\(data, cb\);/);
  assert.match(read('server.js'), /socket\.write\(data, cb\);/);
  assert.equal(PACKET_ROOM_SENT, Symbol.for('tether.packetRoomSent'));
});

for (const cipher of ['aes128-gcm@openssh.com', 'chacha20-poly1305@openssh.com']) {
  test(`${cipher}: a room sent in place goes back to the pool once its packet has left, and is handed out again`, async () => {
    const p = await pair(cipher);
    try {
      drainPool();
      const room = pooledPacketRoom();
      assert.equal(room.length, PACKET_READ_SIZE);
      const data = randomBytes(PACKET_READ_SIZE);
      data.copy(room);
      p.serverCh.write(room);
      assert.equal(sha(await p.read(data.length)), sha(data), 'the packet arrives intact');
      await waitFor(() => pooledRooms() === 1, {
        timeout: 20_000,
        interval: 5,
        what: 'the room back after its write',
      });
      const again = pooledPacketRoom();
      assert.equal(again.buffer, room.buffer, 'the same room is handed out again');
      assert.equal(pooledRooms(), 0);
      // the room's second use: new data, sent in place again, intact
      const second = randomBytes(PACKET_READ_SIZE);
      second.copy(again);
      p.serverCh.write(again);
      assert.equal(sha(await p.read(second.length)), sha(second));
      await waitFor(() => pooledRooms() === 1, {
        timeout: 20_000,
        interval: 5,
        what: 'the room back after its second write',
      });
    } finally {
      p.close();
      drainPool();
    }
  });
}

test('a room goes into the pool at most once per use, never after an error, and the pool is bounded', () => {
  drainPool();
  const room = pooledPacketRoom();
  const sent = sentOf(room);
  assert.equal(typeof sent, 'function');
  sent!();
  sent!();
  assert.equal(pooledRooms(), 1, 'a second callback of the same use adds nothing');
  const next = pooledPacketRoom();
  assert.equal(next.buffer, room.buffer);
  sent!();
  assert.equal(pooledRooms(), 0, "an old use's callback does not put the room back while it is in use again");
  sentOf(next)!(new Error('write after end'));
  assert.equal(pooledRooms(), 0, 'a failed write leaves the room to the garbage collector');
  // a room nobody calls back (copied, or written to a plain socket) never comes back
  pooledPacketRoom();
  assert.equal(pooledRooms(), 0);
  const many = Array.from({ length: ROOM_POOL_MAX + 5 }, () => pooledPacketRoom());
  for (const r of many) sentOf(r)!();
  assert.equal(pooledRooms(), ROOM_POOL_MAX, 'the pool keeps at most ROOM_POOL_MAX rooms');
  const distinct = new Set(Array.from({ length: ROOM_POOL_MAX }, () => pooledPacketRoom().buffer));
  assert.equal(distinct.size, ROOM_POOL_MAX, 'no room is in the pool twice');
});

test('six destinations relayed at once through one ssh2 connection from pooled rooms, some readers slow: every stream arrives intact, and rooms were reused', async () => {
  drainPool();
  const streams = 6;
  const size = 6 * 1024 * 1024;
  const bodies = Array.from({ length: streams }, () => randomBytes(size));
  const servers = await Promise.all(bodies.map((b) => talker(Buffer.alloc(0), b)));
  const { Server, Client, utils } = require('ssh2') as typeof import('ssh2');
  const hostKey = utils.generateKeyPairSync('ed25519').private;
  const received = new Map<number, Buffer[]>();
  const ended: Promise<void>[] = [];
  const server = new Server(
    { hostKeys: [hostKey], algorithms: { cipher: ['aes128-gcm@openssh.com'] } },
    (conn) => {
      conn.on('authentication', (ctx) => ctx.accept());
      conn.on('tcpip', (accept, _reject, info) => {
        const ch = accept();
        const parts: Buffer[] = [];
        received.set(info.srcPort, parts);
        const slow = info.srcPort % 2 === 0;
        ended.push(
          new Promise((resolve) => {
            ch.on('data', (d: Buffer) => {
              parts.push(Buffer.from(d));
              if (slow) {
                // a slow reader: the sender waits for window while others go on
                ch.pause();
                setTimeout(() => ch.resume(), 1);
              }
            });
            ch.on('end', () => {
              ch.end();
              resolve();
            });
          }),
        );
      });
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const client = new Client();
  let reused = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      client.on('ready', () => resolve()).on('error', reject);
      client.connect({
        host: '127.0.0.1',
        port: (server.address() as AddressInfo).port,
        username: 'u',
        password: 'p',
        algorithms: { cipher: ['aes128-gcm@openssh.com'] },
      });
    });
    const poll = setInterval(() => {
      if (pooledRooms() > 0) reused++;
    }, 1);
    await Promise.all(
      servers.map(async (t, i) => {
        const sock = await dialDestination('127.0.0.1', t.port, 10_000);
        const ch = await new Promise<ssh2.ClientChannel>((resolve, reject) =>
          client.forwardOut('127.0.0.1', i, '127.0.0.1', 1, (err, c) => (err ? reject(err) : resolve(c))),
        );
        const r = await new Promise<RelayResult>((resolve) => relay(sock, ch, resolve));
        assert.equal(r.error, undefined);
        assert.equal(r.aToB, size);
      }),
    );
    clearInterval(poll);
    await Promise.all(ended);
    for (let i = 0; i < streams; i++)
      assert.equal(sha(Buffer.concat(received.get(i)!)), sha(bodies[i]!), `stream ${i} arrived intact`);
    assert.ok(reused > 0, 'no room ever went back to the pool');
  } finally {
    client.end();
    server.close();
    for (const t of servers) t.server.close();
    drainPool();
  }
});
