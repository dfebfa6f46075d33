import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { formatHostPort } from '../config/host-port.js';
import { createLogger, silentLogger } from '../log/index.js';
import { generateCa, generateLeaf } from './certs.js';
import { parseExposeRequest } from './expose-request.js';
import { type PeerDaemon, type PeerDeps, resolvePeerOptions, startPeer } from './index.js';

/** A TCP server that answers every connection with its name and closes. */
async function nameServer(name: string): Promise<{ server: Server; port: number }> {
  const server = createServer((s) => s.end(`hello from ${name}`));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port };
}

async function freePort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

function read(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    let out = '';
    s.on('data', (d) => {
      out += d;
    });
    s.on('end', () => resolve(out));
    s.on('error', reject);
  });
}

async function until<T>(
  what: string,
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  ms = 10_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function peer(tunnelPort = 0, deps: Partial<PeerDeps> = {}): Promise<PeerDaemon> {
  const options = await resolvePeerOptions({
    tunnelBind: `127.0.0.1:${tunnelPort}`,
    httpBind: '127.0.0.1:0',
  });
  return startPeer(options, { logger: silentLogger(), random: () => 0.1, ...deps });
}

/** An exposure on `a` through `b` to a service here, on a free port: its id and port. */
async function exposeVia(
  a: PeerDaemon,
  b: PeerDaemon,
  o: { name: string; type: 'local' | 'remote'; servicePort: number },
): Promise<{ id: string; port: number }> {
  const port = await freePort();
  const id = await a.manager.expose(
    parseExposeRequest({
      name: o.name,
      source_port: port,
      source_addr: '127.0.0.1',
      remote_connector_addr: formatHostPort(b.tunnelAddress),
      destination_addr: `127.0.0.1:${o.servicePort}`,
      type: o.type,
    }),
  );
  return { id, port };
}

/** A "remote" exposure on `a` through `b` to a name server: COMPLETE, and it answers. */
async function exposesThrough(a: PeerDaemon, b: PeerDaemon, servicePort: number): Promise<void> {
  const { port } = await exposeVia(a, b, { name: 'through', type: 'remote', servicePort });
  await until('the exposure to be COMPLETE', () => a.manager.list()[0]?.status === 'COMPLETE', 20_000);
  assert.equal(await read(port), 'hello from there');
}

/** A TCP connection from `localAddress` that never speaks; resolves once connected. */
async function silent(port: number, localAddress: string) {
  const s = connect({ host: '127.0.0.1', port, localAddress });
  s.on('error', () => {});
  s.resume();
  const closed = once(s, 'close');
  await once(s, 'connect');
  let isClosed = false;
  void closed.then(() => {
    isClosed = true;
  });
  return { socket: s, closed, isClosed: () => isClosed };
}

test('both directions in process, and exposures come back after the remote peer restarts', async (t) => {
  const here = await nameServer('here');
  const there = await nameServer('there');
  const a = await peer();
  let b = await peer();
  t.after(async () => {
    await a.stop();
    await b.stop();
    here.server.close();
    there.server.close();
  });
  const remote = formatHostPort(b.tunnelAddress);
  const [localPort, remotePort] = [await freePort(), await freePort()];

  const localId = await a.manager.expose(
    parseExposeRequest({
      name: 'mine',
      source_port: localPort,
      source_addr: '127.0.0.1',
      remote_connector_addr: remote,
      destination_addr: `127.0.0.1:${here.port}`,
      type: 'local',
    }),
  );
  const remoteId = await a.manager.expose(
    parseExposeRequest({
      name: 'theirs',
      source_port: remotePort,
      source_addr: '127.0.0.1',
      remote_connector_addr: remote,
      destination_addr: `127.0.0.1:${there.port}`,
      type: 'remote',
    }),
  );
  assert.deepEqual(
    a.manager.list().map((e) => [e.name, e.type, e.status]),
    [
      ['mine', 'LOCAL', 'COMPLETE'],
      ['theirs', 'REMOTE', 'COMPLETE'],
    ],
  );
  assert.equal(await read(localPort), 'hello from here');
  assert.equal(await read(remotePort), 'hello from there');

  await b.stop();
  await until('exposures to leave COMPLETE', () => a.manager.list().every((e) => e.status !== 'COMPLETE'));
  for (const e of a.manager.list()) assert.ok(e.reason, `${e.name} says why it is ${e.status}`);
  b = await peer(Number(remote.split(':')[1]));
  await until('exposures to be COMPLETE again', () => a.manager.list().every((e) => e.status === 'COMPLETE'));
  assert.equal(await read(localPort), 'hello from here');
  assert.equal(await read(remotePort), 'hello from there');

  await a.manager.remove(localId);
  await a.manager.remove(remoteId);
  assert.deepEqual(a.manager.list(), []);
  // Deleting closes our listener ("remote") and the remote peer's ("local").
  await assert.rejects(read(remotePort), /ECONNREFUSED/);
  await assert.rejects(read(localPort), /ECONNREFUSED/);
  await assert.rejects(
    a.manager.remove(localId),
    (e: Error & { status?: number }) => e.status === 404 && /not found/.test(e.message),
  );
});

test('bounds: connections stuck before their handshake, in all and per address, and the handshake deadline', async (t) => {
  const bounds = { maxHandshaking: 3, maxHandshakingPerSource: 2, handshakeTimeoutMs: 1_500 };
  const b = await peer(0, { tunnelBounds: bounds });
  const a = await peer();
  const there = await nameServer('there');
  const held: { socket: { destroy(): void } }[] = [];
  t.after(async () => {
    for (const h of held) h.socket.destroy();
    await a.stop();
    await b.stop();
    there.server.close();
  });
  const port = b.tunnelAddress.port;
  // two from one address are held; a third from it is closed at once, while they stay open
  const s1 = await silent(port, '127.0.0.2');
  const s2 = await silent(port, '127.0.0.2');
  held.push(s1, s2);
  const s3 = await silent(port, '127.0.0.2');
  held.push(s3);
  await s3.closed;
  assert.ok(!s1.isClosed() && !s2.isClosed(), 'the held connections were closed with the refused one');
  // another address still gets in, up to the bound in all
  const s4 = await silent(port, '127.0.0.3');
  held.push(s4);
  const s5 = await silent(port, '127.0.0.4');
  held.push(s5);
  await s5.closed;
  assert.ok(!s4.isClosed(), 'the connection within the bound was closed');
  // the silent ones are closed at the deadline, and a real peer then links and carries data
  await Promise.all([s1.closed, s2.closed, s4.closed]);
  await exposesThrough(a, b, there.port);
});

test('bounds: a remote peer may ask for so many listeners, and a peer keeps so many exposures', async (t) => {
  const b = await peer(0, { tunnelBounds: { maxListenersPerPeer: 2 } });
  const a = await peer(0, { maxExposures: 3 });
  const here = await nameServer('here');
  t.after(async () => {
    await a.stop();
    await b.stop();
    here.server.close();
  });
  const local = async (name: string) =>
    (await exposeVia(a, b, { name, type: 'local', servicePort: here.port })).id;
  await local('one');
  const second = await local('two');
  // B listens for A on two ports, and no more
  await assert.rejects(local('three'), (e: Error & { status?: number }) => {
    assert.equal(e.status, 400);
    assert.match(e.message, /^invalid request: source_port: port \d+ cannot be opened on the remote peer/);
    return true;
  });
  assert.deepEqual(
    a.manager.list().map((e) => [e.name, e.status]),
    [
      ['one', 'COMPLETE'],
      ['two', 'COMPLETE'],
    ],
  );
  // a freed listener can be taken again
  await a.manager.remove(second);
  await local('two again');
  // A keeps three exposures: a fourth is refused by name, and nothing it has is touched
  const { port } = await exposeVia(a, b, { name: 'three', type: 'remote', servicePort: here.port });
  await assert.rejects(local('four'), (e: Error & { status?: number; code?: string }) => {
    assert.equal(e.status, 429);
    assert.equal(e.code, 'PEER_EXPOSURE_LIMIT');
    assert.equal(
      e.message,
      'this peer already has 3 exposures, the most it keeps: delete one first (DELETE /expose/{id})',
    );
    return true;
  });
  assert.equal(a.manager.list().length, 3);
  assert.equal(await read(port), 'hello from here');
});

test('bounds with mTLS: a refused or timed-out connection is logged once, as the bound, not as a failed TLS handshake', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-peer-bounds-'));
  const ca = await generateCa();
  const leaf = await generateLeaf({
    dnsNames: [],
    ipAddresses: ['127.0.0.1'],
    caCert: ca.cert,
    caKey: ca.key,
  });
  writeFileSync(join(dir, 'root.cert'), ca.cert);
  writeFileSync(join(dir, 'leaf.cert'), leaf.cert);
  writeFileSync(join(dir, 'leaf.key'), leaf.key);
  const tls = {
    rootCertPath: join(dir, 'root.cert'),
    serverCertPath: join(dir, 'leaf.cert'),
    serverKeyPath: join(dir, 'leaf.key'),
  };
  const logFile = join(dir, 'b.log');
  const b = await startPeer(
    await resolvePeerOptions({ tunnelBind: '127.0.0.1:0', httpBind: '127.0.0.1:0', ...tls }),
    {
      logger: createLogger({ level: 'info', destination: logFile }),
      tunnelBounds: { maxHandshakingPerSource: 1, handshakeTimeoutMs: 1_000 },
    },
  );
  const a = await startPeer(
    await resolvePeerOptions({ tunnelBind: '127.0.0.1:0', httpBind: '127.0.0.1:0', ...tls }),
    { logger: silentLogger(), random: () => 0.1 },
  );
  const there = await nameServer('there');
  t.after(async () => {
    await a.stop();
    await b.stop();
    there.server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const held = await silent(b.tunnelAddress.port, '127.0.0.2');
  const refused = [
    await silent(b.tunnelAddress.port, '127.0.0.2'),
    await silent(b.tunnelAddress.port, '127.0.0.2'),
  ];
  await Promise.all(refused.map((r) => r.closed));
  await held.closed;
  const lines = () =>
    readFileSync(logFile, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { msg: string; event?: string; reason?: string; count?: number });
  const bound = lines().filter((l) => l.event === 'bound.refused');
  assert.deepEqual(
    bound.map((l) => [l.reason, l.count, l.msg]),
    [
      [
        'peer_handshakes',
        1,
        'refused a tunnel connection: too many connections in their handshake from 127.0.0.2 (1)',
      ],
    ],
  );
  assert.equal(lines().filter((l) => /no TLS and SSH handshake within 1000 ms/.test(l.msg)).length, 1);
  assert.deepEqual(
    lines().filter((l) => /TLS handshake failed/.test(l.msg)),
    [],
    'a connection closed by a bound was logged as a failed handshake too',
  );
  // a real peer with its certificate still gets through
  await exposesThrough(a, b, there.port);
});

test('bounds: the connections carried for one peer at once, in both directions', async (t) => {
  const b = await peer(0, { tunnelBounds: { maxConnectionsPerPeer: 2 } });
  const a = await peer();
  // a service that greets and keeps the connection open
  const held = new Set<import('node:net').Socket>();
  const service = createServer((s) => {
    held.add(s);
    s.on('error', () => {});
    s.write('hi');
  });
  service.listen(0, '127.0.0.1');
  await once(service, 'listening');
  const servicePort = (service.address() as AddressInfo).port;
  t.after(async () => {
    for (const s of held) s.destroy();
    await a.stop();
    await b.stop();
    service.close();
  });
  const remote = await exposeVia(a, b, { name: 'r', type: 'remote', servicePort });
  const local = await exposeVia(a, b, { name: 'l', type: 'local', servicePort });
  await until('both COMPLETE', () => a.manager.list().every((e) => e.status === 'COMPLETE'), 20_000);
  /** Connects to `port`: "hi" when the service answered, "closed" when the peer refused. */
  const greet = (port: number) =>
    new Promise<{ answer: string; socket: import('node:net').Socket }>((resolve) => {
      const s = connect({ host: '127.0.0.1', port });
      s.on('error', () => {});
      s.once('data', (d) => resolve({ answer: String(d), socket: s }));
      s.once('close', () => resolve({ answer: 'closed', socket: s }));
    });
  // two connections through B's dials ("remote") fill A's share on B
  const first = await greet(remote.port);
  const second = await greet(remote.port);
  assert.deepEqual([first.answer, second.answer], ['hi', 'hi']);
  // a third is refused, by dial ("remote") and by carrying back ("local": B's listener)
  assert.equal((await greet(remote.port)).answer, 'closed');
  assert.equal((await greet(local.port)).answer, 'closed');
  // the ones carried go on; once one ends, a new one gets through
  first.socket.destroy();
  await until(
    'a connection to get through again',
    async () => (await greet(local.port)).answer === 'hi',
    20_000,
  );
  second.socket.write('still there');
  assert.equal(second.socket.destroyed, false);
});

test('a drain that begins while an exposure opens its listener: the exposure is refused and its port closed', async (t) => {
  const b = await peer();
  const a = await peer();
  t.after(async () => {
    await a.stop();
    await b.stop();
  });
  const port = await freePort();
  const opening = a.manager.expose(
    parseExposeRequest({
      name: 'late',
      source_port: port,
      source_addr: '127.0.0.1',
      remote_connector_addr: formatHostPort(b.tunnelAddress),
      destination_addr: '127.0.0.1:9',
      type: 'remote',
    }),
  );
  // the listener is still opening (expose() awaits it): the drain starts now
  const drained = a.drain(5_000);
  await assert.rejects(opening, (e: Error & { status?: number; code?: string }) => {
    assert.equal(e.status, 503);
    assert.equal(e.code, 'PEER_STOPPING');
    return true;
  });
  assert.deepEqual(await drained.then((r) => [r.open, r.cut]), [0, 0]);
  await assert.rejects(read(port), /ECONNREFUSED/);
  assert.deepEqual(a.manager.list(), []);
});
