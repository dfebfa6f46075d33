import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import type ssh2 from 'ssh2';
import { type Ssh2Pair, ssh2Pair } from '../../test/helpers/ssh2-pair.js';
import {
  channelWindowOptions,
  INITIAL_WINDOW,
  incomingWindow,
  RttProbe,
  ssh2Patched,
  WindowPolicy,
} from './windows.js';

const require = createRequire(import.meta.url);
const MiB = 1024 * 1024;

/** A clock the test moves by hand. */
function fakeClock(start = 1000) {
  let t = start;
  return {
    now: () => t,
    advance: (ms: number) => {
      t += ms;
    },
  };
}

test('the ssh2 patch is applied (patches/ssh2+*.patch): adaptive-window hooks, 128 KiB packets, reply callbacks', () => {
  assert.equal(
    ssh2Patched(),
    true,
    'ssh2 lacks Tether’s patch: run `npm ci` (patch-package applies patches/)',
  );
  const channel = require('ssh2/lib/Channel.js') as Record<string, unknown>;
  assert.equal(typeof channel.windowThreshold, 'function');
  assert.equal(typeof channel.windowStalled, 'function');
  assert.equal(channel.PACKET_SIZE, 128 * 1024);
  // destroy() ends only a channel not ended yet (no dropped ERR_STREAM_ALREADY_FINISHED per channel)
  const ChannelClass = channel.Channel as { prototype: { destroy: () => unknown } };
  assert.match(String(ChannelClass.prototype.destroy), /if \(!this\.writableEnded\)\s+this\.end\(\);/);
  const fs = require('node:fs') as typeof import('node:fs');
  const crypto = fs.readFileSync(require.resolve('ssh2/lib/protocol/crypto.js'), 'utf8');
  assert.match(crypto, /const MAX_PACKET_SIZE = 128 \* 1024 \+ 4 \* 1024;/);
  assert.match(crypto, /function randomPadding\(packet, offset, len\)/);
  assert.doesNotMatch(crypto, /randomFillSync\(packet, 5 \+ payloadLen, padLen\)/);
  const server = fs.readFileSync(require.resolve('ssh2/lib/server.js'), 'utf8');
  assert.match(server, /this\._channelWindow = /);
  assert.match(server, /replyCallbacks\.shift\(\)/);
});

test('the ssh2 patch takes packet padding from a pool of random bytes: every packet gets fresh bytes, across refills', () => {
  const c = require('ssh2/lib/protocol/crypto.js') as {
    CIPHER_INFO: Record<string, unknown>;
    createCipher(cfg: unknown): { allocPacket(len: number): Buffer };
  };
  const cipher = c.createCipher({
    outbound: {
      onWrite: () => {},
      cipherInfo: c.CIPHER_INFO['aes128-gcm@openssh.com'],
      cipherKey: Buffer.alloc(16, 1),
      cipherIV: Buffer.alloc(12, 2),
      seqno: 0,
    },
  });
  // 6,000 packets of 12-19 padding bytes: several refills of the 16 KiB pool
  const pads = new Set<string>();
  let bytes = 0;
  for (let i = 0; i < 6000; i++) {
    const payload = 1 + (i % 8);
    const p = cipher.allocPacket(payload);
    const padLen = p[4]!;
    assert.ok(padLen >= 4, 'at least 4 bytes of padding');
    bytes += padLen;
    pads.add(p.subarray(5 + payload, 5 + payload + padLen).toString('hex'));
  }
  assert.ok(bytes > 3 * 16 * 1024, `${bytes} padding bytes: the pool was refilled`);
  assert.equal(pads.size, 6000, 'no padding repeats (a pool used twice would)');
});

test('the ssh2 patch compiles the Poly1305 wasm on the first chacha20-poly1305 fallback, not when ssh2 is loaded', () => {
  // A fresh process, so nothing else in this one has used chacha20-poly1305 before the look.
  const script = `
    const ssh2 = require(${JSON.stringify(require.resolve('ssh2'))});
    const c = require(${JSON.stringify(require.resolve('ssh2/lib/protocol/crypto.js'))});
    const out = { server: typeof ssh2.Server, atLoad: c.tetherPoly1305Loaded() };
    setTimeout(() => {
      out.idle = c.tetherPoly1305Loaded();
      const info = c.CIPHER_INFO['chacha20-poly1305@openssh.com'];
      const key = require('node:crypto').randomBytes(64);
      const wire = [];
      const cipher = c.createCipher({ outbound: {
        onWrite: (b) => wire.push(Buffer.from(b)), cipherInfo: info, cipherKey: key, seqno: 7, forceNative: true } });
      out.afterCipher = c.tetherPoly1305Loaded();
      const payloads = [];
      const decipher = c.createDecipher({ inbound: {
        onPayload: (p) => payloads.push(Buffer.from(p).toString()), decipherInfo: info, decipherKey: key, seqno: 7,
        forceNative: true } });
      const body = Buffer.from('through the wasm Poly1305');
      const packet = cipher.allocPacket(body.length);
      body.copy(packet, 5);
      cipher.encrypt(packet);
      const bytes = Buffer.concat(wire);
      decipher.decrypt(bytes, 0, bytes.length);
      out.payloads = payloads;
      console.log(JSON.stringify(out));
    }, 300);`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), {
    server: 'function',
    atLoad: false,
    idle: false,
    afterCipher: true,
    payloads: ['through the wasm Poly1305'],
  });
});

/** Feeds a policy `total` bytes in refills of a quarter window, `msPerRefill` apart. */
function feed(
  p: WindowPolicy,
  clock: ReturnType<typeof fakeClock>,
  total: number,
  msPerRefill: number,
): void {
  let left = total;
  while (left > 0) {
    const n = Math.min(left, p.target() - p.threshold());
    clock.advance(msPerRefill);
    p.consumed(n, false);
    left -= n;
  }
}

test('window policy: a window consumed within a round trip doubles, up to the ceiling', () => {
  const clock = fakeClock();
  const p = new WindowPolicy(32 * MiB, clock, () => 50);
  assert.equal(p.target(), INITIAL_WINDOW);
  assert.equal(p.threshold(), 1.5 * MiB, 'at 2 MiB, a refill once a quarter of the window is used');
  const seen = [p.target()];
  for (let i = 0; i < 12; i++) {
    feed(p, clock, p.target(), 10); // a quarter window per 10 ms: half a window in 20 ms < 1 RTT
    seen.push(p.target());
  }
  assert.deepEqual([...new Set(seen)], [2 * MiB, 4 * MiB, 8 * MiB, 16 * MiB, 32 * MiB]);
  assert.equal(p.threshold(), 24 * MiB, 'once grown, a refill once a quarter is used');
  assert.equal(p.target(), 32 * MiB, 'never above the ceiling');
});

test('window policy: no growth when half a window takes longer than a round trip, on a link under 10 ms, or with the RTT unknown', () => {
  const clock = fakeClock();
  const slow = new WindowPolicy(32 * MiB, clock, () => 1); // loopback-like RTT, 10 ms per quarter
  feed(slow, clock, 64 * MiB, 10);
  assert.equal(slow.target(), INITIAL_WINDOW);
  const short = new WindowPolicy(32 * MiB, clock, () => 5); // a short link: never grows
  feed(short, clock, 64 * MiB, 0);
  assert.equal(short.target(), INITIAL_WINDOW);
  const unknown = new WindowPolicy(32 * MiB, clock, () => undefined);
  feed(unknown, clock, 64 * MiB, 0);
  assert.equal(unknown.target(), INITIAL_WINDOW);
});

test('window policy: a stalled reader halves the window once per stall, down to 2 MiB, and stops growth for that epoch', () => {
  const clock = fakeClock();
  const p = new WindowPolicy(32 * MiB, clock, () => 50);
  for (let i = 0; i < 5; i++) feed(p, clock, p.target(), 1);
  assert.equal(p.target(), 32 * MiB);
  p.stalled();
  p.stalled(); // the same stall: still one halving
  assert.equal(p.target(), 16 * MiB);
  p.consumed(4 * MiB, true); // drained: the next stall halves again
  p.stalled();
  assert.equal(p.target(), 8 * MiB);
  p.consumed(8 * MiB, true); // an epoch with a stall in it: no growth at its end
  assert.equal(p.target(), 8 * MiB);
  for (let i = 0; i < 6; i++) {
    p.stalled();
    p.consumed(1, true);
  }
  assert.equal(p.target(), INITIAL_WINDOW, 'never below the initial 2 MiB');
  // the epoch the last stall fell in ends without growth (1 MiB), the next one doubles (1 MiB),
  // and the last 1 MiB is only half of the next epoch (2 MiB)
  feed(p, clock, 3 * MiB, 1);
  assert.equal(p.target(), 4 * MiB, 'grows again once the reader keeps up');
});

/** A real ssh2 server and client on loopback with an exec channel; the server gets `serverOpts`. */
const pair = (serverOpts: object): Promise<Ssh2Pair> => ssh2Pair({ channel: 'exec', server: serverOpts });

/** Writes `total` bytes on `ch`, honouring backpressure. */
async function send(ch: ssh2.ClientChannel, total: number): Promise<void> {
  const chunk = Buffer.alloc(64 * 1024, 7);
  for (let sent = 0; sent < total; sent += chunk.length) {
    if (!ch.write(chunk)) await new Promise((r) => ch.once('drain', r));
  }
}

test('the ssh2 patch holds no pool slab per session: the idents and the AES-GCM tag own their bytes, the shared secret is wiped', async () => {
  // A Buffer of a few bytes from Buffer.from() or allocUnsafe() is a slice of an 8 KiB pool slab,
  // and one kept for a session's life keeps the slab: about 4 KiB per idle gateway session.
  const p = await pair({ ident: 'Tether_test', algorithms: { cipher: ['aes128-gcm@openssh.com'] } });
  try {
    type Proto = { _identRaw: Buffer; _remoteIdentRaw: Buffer; _decipher: { _tag?: Buffer } };
    const protoOf = (x: unknown) => (x as { _protocol: Proto })._protocol;
    const owns = (b: Buffer) => b.byteOffset === 0 && b.buffer.byteLength === b.length;
    for (const [side, proto] of [
      ['server', protoOf(p.conn)],
      ['client', protoOf(p.client)],
    ] as const) {
      assert.ok(owns(proto._remoteIdentRaw), `${side}: the remote ident owns its bytes`);
      assert.ok(proto._decipher._tag, `${side}: AES-GCM negotiated`);
      assert.ok(owns(proto._decipher._tag!), `${side}: the GCM tag owns its bytes`);
    }
    assert.ok(owns(protoOf(p.conn)._identRaw), 'server: its ident (a Buffer option) owns its bytes');
    const fs = require('node:fs') as typeof import('node:fs');
    const read = (f: string) => fs.readFileSync(require.resolve(`ssh2/lib/protocol/${f}`), 'utf8');
    assert.match(read('kex.js'), /secret\.fill\(0\);\s+secret = undefined;/);
    assert.match(read('Protocol.js'), /this\._onWrite\(sentIdent\);[^}]*sentIdent = undefined;/);
  } finally {
    p.close();
  }
});

test('against the protocol: the receiver’s window grows while it keeps up, the sender gets the credit, and a stall shrinks it', async () => {
  const clock = fakeClock();
  const p = await pair(channelWindowOptions({ maxWindow: 16 * MiB, clock, rtt: () => 50 }));
  try {
    const sender = p.clientCh as unknown as { outgoing: { window: number } };
    let received = 0;
    let maxCredit = 0;
    p.serverCh.on('data', (d: Buffer) => {
      received += d.length;
      maxCredit = Math.max(maxCredit, sender.outgoing.window);
    });
    // fast: the fake clock stands still, so every half window is consumed in 0 ms < 2 RTT
    await send(p.clientCh, 48 * MiB);
    while (received < 48 * MiB) await new Promise((r) => setImmediate(r));
    assert.equal(incomingWindow(p.serverCh).target, 16 * MiB, 'grew to the ceiling');
    assert.ok(maxCredit > 8 * MiB, `the sender was given more than 8 MiB of credit (${maxCredit})`);

    // the reader stops: the sender may still fill what was granted, then waits
    p.serverCh.pause();
    const before = received;
    void send(p.clientCh, 40 * MiB);
    const buffered = () => (p.serverCh as unknown as { readableLength: number }).readableLength;
    const deadline = Date.now() + 20_000;
    let last = -1;
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      if (buffered() === last) break;
      last = buffered();
    }
    assert.ok(buffered() <= 16 * MiB + 256 * 1024, `held at most one window (${buffered()})`);
    assert.ok(buffered() > 0);
    assert.equal(incomingWindow(p.serverCh).target, 8 * MiB, 'the stall halved the window');
    assert.equal(received, before);
  } finally {
    p.close();
  }
});

test('against the protocol: a reader that takes longer than the round trip keeps the 2 MiB window', async () => {
  const clock = fakeClock();
  const p = await pair(channelWindowOptions({ maxWindow: 16 * MiB, clock, rtt: () => 20 }));
  try {
    let received = 0;
    p.serverCh.on('data', (d: Buffer) => {
      received += d.length;
      clock.advance((d.length / MiB) * 100); // 10 MB/s against a 20 ms round trip
    });
    await send(p.clientCh, 24 * MiB);
    while (received < 24 * MiB) await new Promise((r) => setImmediate(r));
    assert.equal(incomingWindow(p.serverCh).target, INITIAL_WINDOW);
  } finally {
    p.close();
  }
});

test('RTT probe: pings over a real connection are answered and timed on both the server and the client side', async () => {
  const clock = { now: () => performance.now() };
  let serverConn: unknown;
  const p = await pair({});
  try {
    serverConn = (p.serverCh as unknown as { _client: unknown })._client;
    const onServer = new RttProbe(serverConn as object, clock);
    const onClient = new RttProbe(p.client as unknown as object, clock);
    assert.equal(onServer.rtt(), undefined);
    assert.equal(onClient.rtt(), undefined);
    const deadline = Date.now() + 10_000;
    while ((onServer.rtt() === undefined || onClient.rtt() === undefined) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const s = onServer.rtt();
    const c = onClient.rtt();
    assert.ok(s !== undefined && s >= 0 && s < 5000, `server side RTT ${s}`);
    assert.ok(c !== undefined && c >= 0 && c < 5000, `client side RTT ${c}`);
  } finally {
    p.close();
  }
});
