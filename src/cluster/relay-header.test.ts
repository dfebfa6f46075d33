import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { isTetherError, TetherError } from '../errors/index.js';
import {
  parseRelayHeader,
  parseRelayRefusal,
  RELAY_ACCEPTED,
  relayAccepted,
  relayHeader,
  relayRefusal,
} from './relay-header.js';

const KEY = 'k'.repeat(43);

/** A connected pair of real sockets: `a` is the relaying member's end, `b` the owner's. */
async function pair(): Promise<{ a: net.Socket; b: net.Socket; close: () => void }> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const a = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => a.once('connect', () => r()));
  const b = await accepted;
  return {
    a,
    b,
    close: () => {
      a.destroy();
      b.destroy();
      server.close();
    },
  };
}

describe('cluster relay header', () => {
  const open: Array<() => void> = [];
  after(() => {
    for (const c of open) c();
  });

  test('a version-2 header asks for the acknowledgement; a version-1 header (previous release) does not', () => {
    const now = 1_700_000_000_000;
    const v2 = relayHeader(KEY, { address: '203.0.113.9', port: 4444 }, 3000, now).trimEnd();
    assert.match(v2, /^TETHER-RELAY 2 203\.0\.113\.9 4444 3000 /);
    assert.deepEqual(parseRelayHeader(KEY, v2, 3000, now), {
      ok: true,
      origin: { address: '203.0.113.9', port: 4444, acknowledge: true, leasePort: 3000 },
    });
    // a worker's relay port serves every lease port: it takes the one the header names
    assert.deepEqual(parseRelayHeader(KEY, v2, undefined, now), {
      ok: true,
      origin: { address: '203.0.113.9', port: 4444, acknowledge: true, leasePort: 3000 },
    });
    assert.deepEqual(parseRelayHeader(KEY, v2, 3001, now), {
      ok: false,
      reason: 'relay header for another lease port',
    });
    // the same header as a version-1 member writes it (its own signature over its own body)
    const body = `TETHER-RELAY 1 203.0.113.9 4444 3000 ${now}`;
    const v1 = `${body} ${createHmac('sha256', KEY).update(body).digest('hex')}`;
    // what this release writes for an owner of an earlier release is exactly that line
    assert.equal(relayHeader(KEY, { address: '203.0.113.9', port: 4444 }, 3000, now, 1).trimEnd(), v1);
    assert.deepEqual(parseRelayHeader(KEY, v1, 3000, now), {
      ok: true,
      origin: { address: '203.0.113.9', port: 4444, leasePort: 3000 },
    });
    assert.deepEqual(parseRelayHeader(KEY, v2.replace('RELAY 2', 'RELAY 3'), 3000, now), {
      ok: false,
      reason: 'not a relay header',
    });
    // the version is signed: turning a 2 into a 1 breaks the signature
    assert.deepEqual(parseRelayHeader(KEY, v2.replace('RELAY 2', 'RELAY 1'), 3000, now), {
      ok: false,
      reason: 'relay header with a wrong signature',
    });
  });

  test('the acknowledgement split over packets is read whole; the service bytes after it stay for the caller', async () => {
    const p = await pair();
    open.push(p.close);
    const done = relayAccepted(p.a, 5_000);
    p.b.write(RELAY_ACCEPTED.subarray(0, 5));
    await new Promise((r) => setTimeout(r, 20));
    p.b.write(Buffer.concat([RELAY_ACCEPTED.subarray(5), Buffer.from('HTTP/1.1 200 OK\r\n')]));
    await done;
    const first = await new Promise<Buffer>((r) => {
      p.a.once('data', r);
      p.a.resume();
    });
    assert.equal(first.toString(), 'HTTP/1.1 200 OK\r\n');
  });

  test('after the acknowledgement the stream is not left paused: an HTTP client on it reads the answer (it only listens, never resumes)', async () => {
    const p = await pair();
    open.push(p.close);
    const done = relayAccepted(p.a, 5_000);
    p.b.write(RELAY_ACCEPTED);
    await done;
    assert.notEqual(p.a.readableFlowing, false, 'not paused');
    // node's HTTP client on a given socket, as the front doors use a relayed stream
    p.b.on('data', () => p.b.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok'));
    const body = await new Promise<string>((resolve, reject) => {
      const req = http.request({ createConnection: () => p.a, path: '/', headers: { host: 'x' } }, (res) => {
        let b = '';
        res.on('data', (c: Buffer) => {
          b += c.toString();
        });
        res.on('end', () => resolve(b));
      });
      req.on('error', reject);
      req.setTimeout(5_000, () => reject(new Error('no answer: the stream stayed paused')));
      req.end();
    });
    assert.equal(body, 'ok');
  });

  test('an owner that closes without accepting (it refused) rejects with the reason, and the socket is closed', async () => {
    const p = await pair();
    open.push(p.close);
    const done = relayAccepted(p.a, 5_000);
    p.b.end();
    await assert.rejects(done, /the owner refused the relayed connection \(closed it\)/);
    assert.ok(p.a.destroyed);
  });

  test('an owner that sends anything else first (an older member passing the service bytes straight on) is refused', async () => {
    const p = await pair();
    open.push(p.close);
    const done = relayAccepted(p.a, 5_000);
    p.b.write('SSH-2.0-OpenSSH_9.2\r\n');
    await assert.rejects(done, /answered a relayed connection without accepting it/);
  });

  test("an owner's refusal that is the caller's answer (a cap, a quota) reaches the relaying side with its status, code and message", async () => {
    const refusal = new TetherError(
      'TRAFFIC_QUOTA_EXHAUSTED',
      'traffic quota exhausted (1 MB per month, resets 2027-01-01)',
      {
        status: 429,
      },
    );
    const line = relayRefusal(refusal);
    assert.equal(
      line?.toString('latin1'),
      'TETHER-RELAY NO 429 TRAFFIC_QUOTA_EXHAUSTED traffic quota exhausted (1 MB per month, resets 2027-01-01)\n',
    );
    const p = await pair();
    open.push(p.close);
    const done = relayAccepted(p.a, 5_000);
    // in pieces, the first of which could still be an acknowledgement
    p.b.write(line!.subarray(0, 13));
    await new Promise((r) => setImmediate(r));
    p.b.end(line!.subarray(13));
    await assert.rejects(done, (e: unknown) => {
      assert.ok(isTetherError(e, 'TRAFFIC_QUOTA_EXHAUSTED'));
      assert.equal(e.status, 429);
      assert.equal(e.message, refusal.message);
      return true;
    });
    assert.ok(p.a.destroyed);
  });

  test('only a 4xx TetherError is told; a bad refusal line counts as a plain refusal', async () => {
    assert.equal(relayRefusal(new Error('socket hang up')), undefined);
    assert.equal(
      relayRefusal(new TetherError('FORWARD_OPEN_FAILED', 'the connector did not accept')),
      undefined,
    );
    assert.equal(
      relayRefusal(
        new TetherError('CONNECTION_LIMIT', 'too many\r\nconnections', { status: 429 }),
      )?.toString(),
      'TETHER-RELAY NO 429 CONNECTION_LIMIT too many  connections\n',
      'one line, whatever the message holds',
    );
    for (const bad of [
      'TETHER-RELAY NO 502 FORWARD_OPEN_FAILED no',
      'TETHER-RELAY NO 429 NOT_A_CODE too many',
      'TETHER-RELAY NO 429 CONNECTION_LIMIT ',
      'TETHER-RELAY NO 42 CONNECTION_LIMIT too many',
      `TETHER-RELAY NO 429 CONNECTION_LIMIT ${'x'.repeat(301)}`,
      'TETHER-RELAY NO 429 CONNECTION_LIMIT caf\u00e9',
    ])
      assert.equal(parseRelayRefusal(bad), undefined, bad);
    const p = await pair();
    open.push(p.close);
    const done = relayAccepted(p.a, 5_000);
    p.b.write(`TETHER-RELAY NO 429 CONNECTION_LIMIT ${'x'.repeat(500)}`);
    await assert.rejects(
      done,
      /answered a relayed connection without accepting it/,
      'no newline within the bound',
    );
    const q = await pair();
    open.push(q.close);
    const other = relayAccepted(q.a, 5_000);
    q.b.end('TETHER-RELAY NO 599 WHATEVER x\n');
    await assert.rejects(other, /answered a relayed connection without accepting it/);
  });

  test('no answer within the bound rejects', async () => {
    const p = await pair();
    open.push(p.close);
    await assert.rejects(relayAccepted(p.a, 100), /did not accept the relayed connection within 100 ms/);
  });
});
