import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { waitFor } from '../helpers/util.js';

const TRANSFERS = 100;
const SIZE = 256 * 1024;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * Behind the connector: takes a POSTed body, answers with the same bytes and, in a header, the
 * SHA-256 of what it received. Counts complete request bodies (to time the kill). After the first
 * `answerAtOnce` bodies it holds its answers until `release()`, so that transfers are still in
 * flight when the test kills the gateway however fast the machine moves the others.
 */
async function startShaServer(answerAtOnce: number): Promise<{
  port: number;
  received: () => number;
  release(): void;
  close(): Promise<void>;
}> {
  let received = 0;
  const held: Array<() => void> = [];
  let released = false;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      received++;
      const answer = () => {
        if (res.destroyed) return;
        res.writeHead(200, { 'content-length': body.length, 'x-sha256': sha(body) });
        res.end(body);
      };
      if (received <= answerAtOnce || released) answer();
      else held.push(answer);
    });
    req.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen({ host: '127.0.0.1', port: 0 }, () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    received: () => received,
    release: () => {
      released = true;
      for (const a of held.splice(0)) a();
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

type Outcome = { kind: 'complete' } | { kind: 'failed'; why: string } | { kind: 'corrupted'; why: string };

/**
 * One transfer: 256 KiB up, the same 256 KiB back. "complete" needs the full length back with
 * the right hash both ways; an error or a short body is "failed"; a full-length answer with the
 * wrong bytes, or a wrong hash of what the server got, is "corrupted" (what must never happen).
 */
function transfer(port: number, payload: Buffer): Promise<Outcome> {
  const want = sha(payload);
  return new Promise((resolve) => {
    let done = false;
    const finish = (o: Outcome) => {
      if (!done) {
        done = true;
        resolve(o);
      }
    };
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/',
        agent: false,
        headers: { 'content-length': payload.length, connection: 'close' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('aborted', () => finish({ kind: 'failed', why: 'response aborted' }));
        res.on('error', (e) => finish({ kind: 'failed', why: `response: ${e.message}` }));
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          if (res.statusCode !== 200) return finish({ kind: 'failed', why: `status ${res.statusCode}` });
          if (body.length !== payload.length)
            return finish({ kind: 'failed', why: `short body ${body.length}` });
          if (res.headers['x-sha256'] !== want)
            return finish({ kind: 'corrupted', why: 'the server received other bytes' });
          if (sha(body) !== want) return finish({ kind: 'corrupted', why: 'other bytes came back' });
          finish({ kind: 'complete' });
        });
      },
    );
    req.setTimeout(60_000, () => req.destroy(new Error('timeout')));
    req.on('error', (e) => finish({ kind: 'failed', why: e.message }));
    req.end(payload);
  });
}

describe('faults: kill -9 of the gateway during 100 concurrent transfers', () => {
  let gw: TestGateway;
  let conn: TestConnector;
  let server: Awaited<ReturnType<typeof startShaServer>>;

  before(async () => {
    [gw, server] = await Promise.all([startGateway(), startShaServer(TRANSFERS / 5)]);
    const keyFile = await gw.addTenant('acme');
    conn = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile,
      // Full-jitter backoff: the wait before an attempt is random up to min(max_delay, 0.5 s · 2^n).
      // With the default max_delay (30 s) a restart that takes several seconds on a busy machine
      // can leave the next attempt more than 10 s away; 6 s bounds it.
      config: { reconnect: { max_delay: '6s' } },
      repositories: { grp: { web: `http://127.0.0.1:${server.port}` } },
    });
  });
  after(async () => {
    await conn?.stop();
    await gw?.stop();
    await server?.close();
  });

  test('every transfer completes with the right SHA-256 or fails with an error; the connector is back within 10 s', async (t) => {
    const port = await conn.leasePort('grp/web');
    const payloads = Array.from({ length: TRANSFERS }, () => randomBytes(SIZE));
    let finished = 0;
    const running = payloads.map((p) =>
      transfer(port, p).then((o) => {
        finished++;
        return o;
      }),
    );

    // kill while the transfers are in full flow: a fifth answered, the server holding the answers
    // of at least ten more, the rest still moving (the held ones make "in flight" certain)
    await waitFor(() => finished >= TRANSFERS / 5 && server.received() >= TRANSFERS / 5 + 10, {
      timeout: 60_000,
      interval: 2,
      what: '20 transfers answered and 10 more bodies received',
    });
    const receivedAtKill = server.received();
    const finishedAtKill = finished;
    await gw.kill('SIGKILL');
    const killedAt = Date.now();
    server.release();
    const outcomes = await Promise.all(running);

    const complete = outcomes.filter((o) => o.kind === 'complete').length;
    const failed = outcomes.filter((o) => o.kind === 'failed');
    const corrupted = outcomes.filter((o) => o.kind === 'corrupted');
    t.diagnostic(
      `at the kill: ${finishedAtKill} transfers finished, the server had ${receivedAtKill} bodies; ${complete} complete, ${failed.length} failed ` +
        `(${[...new Set(failed.map((f) => (f as { why: string }).why))].join('; ')}), ${corrupted.length} corrupted`,
    );
    assert.deepEqual(corrupted, [], 'no transfer is silently corrupted');
    assert.equal(complete + failed.length, TRANSFERS);
    assert.ok(failed.length > 0, 'the kill hit transfers in flight');

    // the same ports again; the connector comes back on its own
    await gw.restart();
    const restartedAt = Date.now();
    const back = await conn.leasePort('grp/web', 30_000);
    const reconnectMs = Date.now() - restartedAt;
    t.diagnostic(
      `gateway down ${restartedAt - killedAt} ms; connector back ${reconnectMs} ms after the restart (lease port ${back})`,
    );
    assert.equal(back, port, 'the same lease port after the restart');
    assert.ok(reconnectMs <= 10_000, `connector back after ${reconnectMs} ms`);

    // and transfers work again
    const after = await Promise.all(payloads.slice(0, 10).map((p) => transfer(port, p)));
    assert.deepEqual(
      after.map((o) => o.kind),
      Array(10).fill('complete'),
    );
  });
});
