import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Server } from 'node:net';
import { test } from 'node:test';
import { formatHostPort } from '../config/host-port.js';
import { silentLogger } from '../log/index.js';
import { parseExposeRequest } from './expose-request.js';
import { type PeerDaemon, resolvePeerOptions, startPeer } from './index.js';

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

async function until<T>(what: string, fn: () => T | undefined | false, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function peer(tunnelPort = 0): Promise<PeerDaemon> {
  const options = await resolvePeerOptions({
    tunnelBind: `127.0.0.1:${tunnelPort}`,
    httpBind: '127.0.0.1:0',
  });
  return startPeer(options, { logger: silentLogger(), random: () => 0.1 });
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
