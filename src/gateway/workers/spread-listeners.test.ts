import assert from 'node:assert/strict';
import net from 'node:net';
import { after, test } from 'node:test';
import { silentLogger } from '../../log/index.js';
import type { ListenFn } from '../../tunnel/listen.js';
import type { PrimaryMessage, WorkerMessage } from './protocol.js';
import { SpreadListeners, spreadListen } from './spread-listeners.js';

/**
 * The primary's spread listeners and two workers' ListenFns in one process, their messages
 * carried by hand in order (as IPC carries them); a passed socket reaches the worker as the same
 * object. The real IPC, with the socket's descriptor, is test/e2e/workers.test.ts's.
 */
function gateway(
  o: { maxPassing?: number; maxPassingConnections?: number; stalled?: boolean; holdUnlisten?: boolean } = {},
) {
  /** Unlistens the primary has not read yet (`holdUnlisten`): run them to let it read them. */
  const held: Array<() => void> = [];
  const toWorker = new Map<number, Set<(m: unknown, handle?: unknown) => void>>();
  const connected = new Map<number, boolean>();
  const stalled: net.Socket[] = [];
  /** The primary's handle on worker `slot`'s process. */
  const processOf = (slot: number) => ({
    isConnected: () => connected.get(slot) ?? false,
    send: (m: PrimaryMessage, socket: net.Socket, cb: (err: Error | null) => void) => {
      // a stalled worker never takes what is sent (node sends one handle at a time)
      if (o.stalled) {
        stalled.push(socket);
        return true;
      }
      queueMicrotask(() => {
        for (const l of toWorker.get(slot) ?? []) l(m, socket);
        cb(null);
      });
      return true;
    },
  });
  const primary = new SpreadListeners({
    log: silentLogger(),
    maxPassing: o.maxPassing ?? 64,
    ...(o.maxPassingConnections ? { maxPassingConnections: o.maxPassingConnections } : {}),
  });
  const worker = (slot: number) => {
    connected.set(slot, true);
    toWorker.set(slot, new Set());
    const target = processOf(slot);
    const send = (m: WorkerMessage) =>
      queueMicrotask(() => {
        if (m.t === 'tether:listen')
          primary.take(slot, m, target).then(
            (address) => deliver(slot, { t: 'tether:listening', id: m.id, address }),
            (err: NodeJS.ErrnoException) =>
              deliver(slot, { t: 'tether:listening', id: m.id, error: err.code ?? err.message }),
          );
        else if (m.t === 'tether:unlisten') {
          const answer = () => {
            primary.drop(slot, m.key);
            deliver(slot, { t: 'tether:unlistened', key: m.key });
          };
          if (o.holdUnlisten) held.push(answer);
          else answer();
        }
      });
    const deliver = (to: number, m: PrimaryMessage) => {
      for (const l of toWorker.get(to) ?? []) l(m);
    };
    const listen: ListenFn = spreadListen(send, (fn) => {
      toWorker.get(slot)?.add(fn);
      return () => toWorker.get(slot)?.delete(fn);
    });
    const got: net.Socket[] = [];
    const server = net.createServer({ pauseOnConnect: true }, (s) => got.push(s));
    return {
      slot,
      server,
      got,
      listen: (port = 0) => listen(server, { host: '127.0.0.1', port, key: 'tunnel', logins: true }),
      /** Opens `other` (a lease port's or a front door's server) as `key` through the primary. */
      listenAs: (other: net.Server, key: string, port = 0) => listen(other, { host: '127.0.0.1', port, key }),
    };
  };
  return { primary, worker, connected, stalled, held };
}

const open: net.Socket[] = [];
after(() => {
  for (const s of open) s.destroy();
});

/** Connects, sends `text`, and resolves once connected. */
function dial(port: number, text: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.write(text);
      resolve(s);
    });
    open.push(s);
    s.once('error', reject);
  });
}

/** Connects `n` callers one after another; entry i turns true once caller i is closed. */
async function dialInTurn(port: number, n: number): Promise<boolean[]> {
  const closed: boolean[] = [];
  for (let i = 0; i < n; i++) {
    const c = await dial(port, 'x');
    closed.push(false);
    c.once('close', () => {
      closed[i] = true;
    });
  }
  return closed;
}

async function until(what: string, ok: () => boolean): Promise<void> {
  const end = Date.now() + 10_000;
  while (!ok()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Connects, sends `text` and ends its side (when given), and resolves with all the server sent. */
function answerTo(port: number, text?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1', () => {
      if (text !== undefined) c.end(text);
    });
    open.push(c);
    let got = '';
    c.on('data', (d: Buffer) => {
      got += d.toString();
    });
    c.once('end', () => resolve(got));
    c.once('error', reject);
  });
}

function readAll(s: net.Socket, n: number): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    s.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.length >= n) resolve(text);
    });
    s.resume();
  });
}

test('logins go to the workers in turn, and nothing a client sent first is lost', async () => {
  const { primary, worker } = gateway();
  const w1 = worker(1);
  const w2 = worker(2);
  const a1 = await w1.listen();
  const a2 = await w2.listen();
  assert.equal(a1.port, a2.port, 'one listener, opened once, for every worker');
  assert.equal(w1.server.listening, false, 'the worker itself does not listen');
  for (let i = 0; i < 4; i++) {
    await dial(a1.port, `SSH-2.0-client-${i}\r\n`);
    await until(`connection ${i}`, () => w1.got.length + w2.got.length === i + 1);
  }
  assert.equal(w1.got.length, 2);
  assert.equal(w2.got.length, 2);
  const texts = await Promise.all(
    [...w1.got, ...w2.got].map((s) => readAll(s, 'SSH-2.0-client-0\r\n'.length)),
  );
  assert.deepEqual(texts.sort(), [0, 1, 2, 3].map((i) => `SSH-2.0-client-${i}\r\n`).sort());
  primary.close();
});

test('a worker whose listener closed (or that is gone) gets no more; with none left a login is closed', async () => {
  const { primary, worker, connected } = gateway();
  const w1 = worker(1);
  const w2 = worker(2);
  const { port } = await w1.listen();
  await w2.listen();
  assert.deepEqual(primary.takersOf('tunnel'), [1, 2]);
  w1.server.close();
  await until('worker 1 dropped', () => primary.takersOf('tunnel').join() === '2');
  for (let i = 0; i < 3; i++) await dial(port, 'x');
  await until('three on worker 2', () => w2.got.length === 3);
  assert.equal(w1.got.length, 0);
  connected.set(2, false);
  const refused = await dial(port, 'y');
  await new Promise<void>((resolve) => refused.once('close', () => resolve()));
  assert.equal(w2.got.length, 3, 'nothing passed to a worker that is gone');
  primary.close();
});

test('a port in use is refused with its code, opens at a later ask, and nothing opens after the drain', async () => {
  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
  const port = (busy.address() as net.AddressInfo).port;
  const { primary, worker } = gateway();
  const w1 = worker(1);
  await assert.rejects(w1.listen(port), (e: NodeJS.ErrnoException) => {
    assert.equal(e.code, 'EADDRINUSE');
    assert.match(e.message, new RegExp(`EADDRINUSE 127\\.0\\.0\\.1:${port}`));
    return true;
  });
  await new Promise<void>((r) => busy.close(() => r()));
  assert.equal((await w1.listen(port)).port, port, 'opened once the port is free');
  primary.close();
  await assert.rejects(
    new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(s));
      s.once('error', reject);
    }),
    { code: 'ECONNREFUSED' },
    'the drain closed the listener',
  );
  await assert.rejects(worker(2).listen(), { code: 'ESHUTDOWN' });
});

test('a flood is bounded in the primary: past max_unauthenticated sockets on their way to workers, new ones are closed at once', async () => {
  const { primary, worker, stalled } = gateway({ maxPassing: 3, stalled: true });
  const w1 = worker(1);
  const { port } = await w1.listen();
  // one after another: the primary accepts them in this order
  const closed = await dialInTurn(port, 10);
  // seven are closed; three wait on the stalled worker (open until the end of the test)
  await until('seven closed', () => closed.slice(3).every(Boolean));
  assert.deepEqual(closed.slice(0, 3), [false, false, false], 'the first three were passed on, not closed');
  assert.equal(stalled.length, 3);
  for (const s of stalled) s.destroy();
  primary.close();
});

test("a worker that exited while the listener opened is not handed logins; its slot's next process is", async () => {
  const { primary, worker, connected } = gateway();
  const w1 = worker(1);
  const { port } = await w1.listen();
  const gone = { isConnected: () => false, send: () => assert.fail('nothing is sent to an exited worker') };
  await primary.take(2, { key: 'tunnel', host: '127.0.0.1', port, logins: true }, gone);
  assert.deepEqual(primary.takersOf('tunnel'), [1]);
  // the restarted worker 2 asks anew and gets its turn
  const w2 = worker(2);
  await w2.listen(port);
  assert.deepEqual(primary.takersOf('tunnel'), [1, 2]);
  for (let i = 0; i < 2; i++) await dial(port, 'x');
  await until('one each', () => w1.got.length === 1 && w2.got.length === 1);
  connected.set(1, false);
  primary.close();
});

test('a lease port through the primary: the worker reads the caller as its own server would (flowing, half-open kept), and the port is free once no worker takes it', async () => {
  const { primary, worker } = gateway();
  const w1 = worker(1);
  // a lease port's server: not paused on connect, half-open (a caller's FIN still gets the answer)
  const lease = net.createServer({ allowHalfOpen: true }, (s) => {
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    // answered a moment after the caller's FIN, as a connector's answer comes
    s.on('end', () => setImmediate(() => s.end(`echo:${Buffer.concat(got).toString()}`)));
  });
  const { port } = await w1.listenAs(lease, 'lease:x');
  assert.deepEqual(primary.takersOf('lease:x'), [1]);
  const answer = await answerTo(port, 'hello');
  assert.equal(answer, 'echo:hello', 'the answer came after the caller had ended its side');
  lease.close();
  await until('the primary closed the port', () => primary.takersOf('lease:x').length === 0);
  // nothing listens there any more: the same port can be opened by another program
  const other = net.createServer();
  other.listen(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    other.once('listening', () => resolve());
    other.once('error', reject);
  });
  await new Promise<void>((r) => other.close(() => r()));
  primary.close();
});

test('an HTTP front door through the primary answers every request of a keep-alive caller', async () => {
  const { primary, worker } = gateway();
  const http = await import('node:http');
  const door = http.createServer((req, res) => res.end(`path ${req.url}`));
  const { port } = await worker(1).listenAs(door, 'http_proxy');
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  for (const path of ['/a', '/b', '/c']) {
    const body = await new Promise<string>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path, agent }, (res) => {
          let text = '';
          res.on('data', (d: Buffer) => {
            text += d.toString();
          });
          res.on('end', () => resolve(text));
        })
        .once('error', reject);
    });
    assert.equal(body, `path ${path}`);
  }
  agent.destroy();
  door.close();
  primary.close();
});

test('lease ports and front doors have their own bound (not max_unauthenticated): past it a new connection is closed', async () => {
  const { primary, worker, stalled } = gateway({ maxPassing: 1, maxPassingConnections: 4, stalled: true });
  const door = net.createServer();
  const { port } = await worker(1).listenAs(door, 'access_proxy');
  const closed = await dialInTurn(port, 7);
  await until('three closed', () => closed.slice(4).every(Boolean));
  assert.deepEqual(
    closed.slice(0, 4),
    [false, false, false, false],
    'four were passed on (max_unauthenticated 1 does not apply)',
  );
  assert.equal(stalled.length, 4);
  for (const s of stalled) s.destroy();
  door.close();
  primary.close();
});

test("a connection passed on before the primary read a worker's unlisten still reaches that worker's closed server (which relays it on), none after the answer", async () => {
  const { primary, worker, held } = gateway({ holdUnlisten: true });
  const w1 = worker(1);
  const w2 = worker(2);
  const got = { 1: 0, 2: 0 };
  const lease = (n: 1 | 2) =>
    net.createServer((s) => {
      got[n]++;
      s.end(`worker ${n}`);
    });
  const s1 = lease(1);
  const { port } = await w1.listenAs(s1, 'lease:y');
  await w2.listenAs(lease(2), 'lease:y');
  // worker 1's forward moved away: its server closes, and the primary has not read that yet
  s1.close();
  await until('the unlisten sent', () => held.length === 1);
  const answers: string[] = [];
  const call = () =>
    new Promise<void>((resolve, reject) => {
      const c = net.connect(port, '127.0.0.1');
      open.push(c);
      let text = '';
      c.on('data', (d: Buffer) => {
        text += d.toString();
      });
      c.once('close', () => {
        answers.push(text);
        resolve();
      });
      c.once('error', reject);
    });
  for (let i = 0; i < 2; i++) await call();
  assert.deepEqual(
    answers.sort(),
    ['worker 1', 'worker 2'],
    'the one passed to worker 1 was served there, not dropped',
  );
  for (const answer of held.splice(0)) answer();
  await until('worker 1 dropped', () => primary.takersOf('lease:y').join() === '2');
  for (let i = 0; i < 2; i++) await call();
  assert.deepEqual(got, { 1: 1, 2: 3 });
  primary.close();
});

test('a drain closes the login listeners at once; a lease port keeps passing connections until its worker closes it', async () => {
  const { primary, worker } = gateway();
  const w1 = worker(1);
  const { port: tunnelPort } = await w1.listen();
  const lease = net.createServer((s) => s.end('served'));
  const { port: leasePort } = await w1.listenAs(lease, 'lease:z');
  primary.drain();
  const refusedOn = (port: number) =>
    assert.rejects(
      new Promise((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1', () => resolve(s));
        s.once('error', reject);
      }),
      { code: 'ECONNREFUSED' },
    );
  await refusedOn(tunnelPort);
  await assert.rejects(w1.listen(), { code: 'ESHUTDOWN' }, 'no login listener opens during a drain');
  const answer = await answerTo(leasePort);
  assert.equal(answer, 'served', 'the lease port still serves while its forward is here');
  lease.close();
  await until('the lease port closed', () => primary.takersOf('lease:z').length === 0);
  await refusedOn(leasePort);
  primary.close();
});
