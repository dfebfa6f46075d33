import assert from 'node:assert/strict';
import net from 'node:net';
import { Duplex } from 'node:stream';
import { test } from 'node:test';
import { FakeClock } from '../../test/helpers/core.js';
import { waitFor } from '../../test/helpers/util.js';
import { type ForwardEndpoint, ForwardRegistry, type LiveSession } from '../core/forward-registry.js';
import type { Logger } from '../log/index.js';
import { ConnectionBroker, type ConnectionMetricsSink } from './broker.js';
import { packetReaderOf } from './packet-read.js';
import { coalesceWrites } from './pipe.js';

type Rec = Record<string, unknown> & { msg?: string };

function recorder(): { log: Logger; records: Rec[] } {
  const records: Rec[] = [];
  const log = {
    info: (fields: Rec, msg?: string) => records.push({ ...fields, msg }),
  } as unknown as Logger;
  return { log, records };
}

function sink(): ConnectionMetricsSink & { calls: Array<[string, Record<string, unknown>]> } {
  const calls: Array<[string, Record<string, unknown>]> = [];
  return {
    calls,
    connectionOpened: (e) => calls.push(['opened', e]),
    connectionRefused: (e) => calls.push(['refused', e]),
    connectionClosed: (e) => calls.push(['closed', e]),
  };
}

/** A connector channel that answers every chunk with it upper-cased, and ends when the caller ends. */
function upperChannel(): Duplex {
  const d: Duplex = new Duplex({
    read() {},
    write(c: Buffer, _e, cb) {
      d.push(c.toString().toUpperCase());
      cb();
    },
    final(cb) {
      d.push(null);
      cb();
    },
  });
  return d;
}

const session: LiveSession = {
  id: 's1',
  tenant: 'acme',
  source: '10.0.0.1:22',
  since: 0,
  fingerprint: '',
  agent: 'test',
  end() {},
};

function endpoint(
  seen: Array<{ address: string; port: number }>,
  open?: () => Promise<Duplex>,
): ForwardEndpoint {
  return {
    session,
    connections: 0,
    open: (origin) => {
      seen.push(origin);
      return open ? open() : Promise.resolve(upperChannel());
    },
  };
}

/** Starts `server` on loopback and connects a half-open caller to it, with what the caller receives. */
async function callerOf(server: net.Server): Promise<{ c: net.Socket; got: Buffer[] }> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  const got: Buffer[] = [];
  c.on('data', (b: Buffer) => got.push(b));
  return { c, got };
}

test('splice: opens through the registry, relays both ways with half-close, accounts, logs and reports once', async () => {
  const clock = new FakeClock();
  const registry = new ForwardRegistry(clock);
  const origins: Array<{ address: string; port: number }> = [];
  registry.add('acme', 'grp/web', 2201, endpoint(origins), null);
  const { log, records } = recorder();
  const metrics = sink();
  const broker = new ConnectionBroker({ registry, clock, log, metrics });

  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.pause();
    void broker.splice(
      {
        tenant: 'acme',
        label: 'grp/web',
        origin: { address: '192.0.2.7', port: 4242 },
        frontDoor: 'raw_port',
        port: 2201,
      },
      socket,
    );
  });
  const { c, got } = await callerOf(server);
  try {
    const ended = new Promise<void>((r) => c.once('end', r));
    c.end('hello');
    await ended;
    assert.equal(Buffer.concat(got).toString(), 'HELLO', 'the answer arrives after the caller half-closed');
    c.destroy();
    const closed = await waitFor(() => records.find((r) => r.event === 'connection.closed'));
    assert.deepEqual(
      origins,
      [{ address: '192.0.2.7', port: 4242 }],
      'the connector sees the caller as origin',
    );
    const opened = records.find((r) => r.event === 'connection.opened');
    assert.deepEqual(opened, {
      event: 'connection.opened',
      tenant: 'acme',
      label: 'grp/web',
      port: 2201,
      source: '192.0.2.7:4242',
      msg: 'connection opened',
    });
    assert.equal(closed.bytes_in, 5);
    assert.equal(closed.bytes_out, 5);
    assert.equal(typeof closed.duration_ms, 'number');
    assert.equal(closed.msg, 'connection closed');
    assert.deepEqual(
      metrics.calls.map(([k]) => k),
      ['opened', 'closed'],
    );
    assert.deepEqual(metrics.calls[1]![1], {
      frontDoor: 'raw_port',
      tenant: 'acme',
      bytesIn: 5,
      bytesOut: 5,
      durationMs: 0,
    });
    assert.equal(registry.get('acme', 'grp/web')!.bytesIn, 5, 'the forward counted the bytes');
    assert.equal(registry.openConnections('acme'), 0, 'the slot is released');
  } finally {
    server.close();
  }
});

test('splice: a caller whose accepted reply is corked (a relayed raw-port caller) still moves to packet rooms; the reply comes first, then every byte', async () => {
  const registry = new ForwardRegistry(new FakeClock());
  registry.add('acme', 'grp/web', 2201, endpoint([]), null);
  const broker = new ConnectionBroker({
    registry,
    clock: new FakeClock(),
    log: recorder().log,
    metrics: sink(),
  });
  let given!: (v: { old: net.Socket; caller: Duplex }) => void;
  const accepted = new Promise<{ old: net.Socket; caller: Duplex }>((r) => (given = r));
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
    // as the raw port does: its writes are gathered within a tick, so the reply is queued at first
    coalesceWrites(socket);
    void broker.splice(
      {
        tenant: 'acme',
        label: 'grp/web',
        origin: { address: '192.0.2.7', port: 1 },
        frontDoor: 'raw_port',
        port: 2201,
      },
      socket,
      {
        accepted: (caller) => {
          given({ old: socket, caller });
          caller.write('OK:');
        },
      },
    );
  });
  const { c, got } = await callerOf(server);
  try {
    const { old, caller } = await accepted;
    assert.notEqual(caller, old, 'the reply went to the socket the caller moved to');
    assert.ok(packetReaderOf(caller), 'the caller reads into packet rooms');
    const body = 'x'.repeat(300_000);
    const ended = new Promise<void>((r) => c.once('end', r));
    c.end(body);
    await ended;
    assert.equal(
      Buffer.concat(got).toString(),
      `OK:${body.toUpperCase()}`,
      'the reply first, then every byte, in order',
    );
    c.destroy();
  } finally {
    server.close();
  }
});

test('open: a refusal is logged once with its reason, reported, and given to the front door', async () => {
  const clock = new FakeClock();
  const registry = new ForwardRegistry(clock);
  const { log, records } = recorder();
  const metrics = sink();
  const broker = new ConnectionBroker({ registry, clock, log, metrics });
  const req = {
    tenant: 'acme',
    label: 'grp/none',
    origin: { address: '192.0.2.8', port: 1 },
    frontDoor: 'access_proxy' as const,
  };
  await assert.rejects(broker.open(req), /repository grp\/none of acme is offline \(no connector\)/);
  assert.deepEqual(records, [
    {
      event: 'connection.refused',
      front_door: 'access_proxy',
      tenant: 'acme',
      label: 'grp/none',
      source: '192.0.2.8:1',
      reason: 'repository grp/none of acme is offline (no connector)',
      msg: 'connection refused',
    },
  ]);
  assert.deepEqual(metrics.calls, [
    [
      'refused',
      {
        frontDoor: 'access_proxy',
        tenant: 'acme',
        reason: 'repository grp/none of acme is offline (no connector)',
      },
    ],
  ]);
  const r = await broker.splice(req, new Duplex({ read() {}, write: (_c, _e, cb) => cb() }));
  assert.ok('refused' in r, 'splice hands the refusal back instead of throwing');
});

test('open: close() accounts once, with the front door fields; a caller gone before the channel opened closes it', async () => {
  const clock = new FakeClock();
  const registry = new ForwardRegistry(clock);
  let channel: Duplex | undefined;
  registry.add(
    'acme',
    'grp/web',
    2201,
    endpoint([], async () => {
      channel = upperChannel();
      return channel;
    }),
    null,
  );
  const { log, records } = recorder();
  const broker = new ConnectionBroker({ registry, clock, log });
  const req = {
    tenant: 'acme',
    label: 'grp/web',
    origin: { address: '192.0.2.9', port: 2 },
    frontDoor: 'http_proxy' as const,
    identity: 'alice@example.com',
  };
  const c = await broker.open(req);
  clock.advance(250);
  c.close(10, 20, { message: 'request forwarded', fields: { method: 'GET', status: 200 } });
  c.close(99, 99);
  const closed = records.filter((r) => r.event === 'connection.closed');
  assert.equal(closed.length, 1);
  assert.deepEqual(closed[0], {
    event: 'connection.closed',
    front_door: 'http_proxy',
    tenant: 'acme',
    label: 'grp/web',
    source: '192.0.2.9:2',
    identity: 'alice@example.com',
    method: 'GET',
    status: 200,
    bytes_in: 10,
    bytes_out: 20,
    duration_ms: 250,
    msg: 'request forwarded',
  });
  assert.equal(registry.get('acme', 'grp/web')!.bytesOut, 20);

  const gone = new Duplex({ read() {}, write: (_c, _e, cb) => cb() });
  gone.destroy();
  await broker.splice({ ...req, frontDoor: 'raw_port' }, gone);
  assert.equal(channel?.destroyed, true, 'the channel of a caller that left is closed');
  assert.equal(registry.openConnections('acme'), 0);
});

test('drain API: openCount by session, idle() resolves when the last connection closes or false at its timeout, cutAll() destroys what is open', async () => {
  const clock = new FakeClock();
  const registry = new ForwardRegistry(clock);
  registry.add('acme', 'grp/web', 2201, endpoint([]), null);
  const { log } = recorder();
  const broker = new ConnectionBroker({ registry, clock, log });
  const req = {
    tenant: 'acme',
    label: 'grp/web',
    origin: { address: '203.0.113.9', port: 5000 },
    frontDoor: 'access_proxy' as const,
  };
  assert.equal(await broker.idle(1_000), true, 'idle at once with nothing open');
  const a = await broker.open(req);
  const b = await broker.open(req);
  assert.equal(broker.openCount(), 2);
  assert.equal(broker.openCount('s1'), 2);
  assert.equal(broker.openCount('other'), 0);

  // closes before the timeout: true
  const waiting = broker.idle(5_000);
  a.close(1, 1);
  assert.equal(broker.openCount(), 1);
  b.close(2, 2);
  assert.equal(await waiting, true);
  assert.equal(broker.openCount(), 0);

  // still open at the timeout: false, and cutAll destroys it
  const c = await broker.open(req);
  const timedOut = broker.idle(5_000);
  clock.advance(5_000);
  assert.equal(await timedOut, false);
  assert.equal(broker.cutAll(), 1);
  assert.equal(c.stream.destroyed, true);
  c.close(0, 0);
  assert.equal(broker.openCount(), 0);
});

test('cutRefused: ends the open connections of the tenant that the refusal no longer admits, with the reason as their error; others stay', async () => {
  const registry = new ForwardRegistry(new FakeClock());
  registry.add('acme', 'grp/web', 2201, endpoint([]), null);
  registry.add('acme', 'grp/db', 2202, endpoint([]), null);
  registry.add('beta', 'grp/web', 2203, endpoint([]), null);
  const broker = new ConnectionBroker({ registry, clock: new FakeClock(), log: recorder().log });
  const open = (tenant: string, label: string, address: string) =>
    broker.open({ tenant, label, origin: { address, port: 1 }, frontDoor: 'raw_port' });
  const outside = await open('acme', 'grp/web', '192.0.2.7');
  const otherRepo = await open('acme', 'grp/db', '192.0.2.7');
  const inside = await open('acme', 'grp/web', '198.51.100.1');
  const otherTenant = await open('beta', 'grp/web', '192.0.2.7');
  const errors = new Map<Duplex, Error>();
  for (const c of [outside, otherRepo, inside, otherTenant])
    c.stream.on('error', (e) => errors.set(c.stream, e));
  const asked: string[] = [];
  const n = broker.cutRefused('acme', (label, address) => {
    asked.push(`${label} ${address}`);
    return label === 'grp/web' && address === '192.0.2.7'
      ? 'source address 192.0.2.7 is not in the list'
      : undefined;
  });
  assert.equal(n, 1);
  assert.deepEqual(
    asked.sort(),
    ['grp/db 192.0.2.7', 'grp/web 192.0.2.7', 'grp/web 198.51.100.1'],
    'only acme is judged',
  );
  assert.equal(outside.stream.destroyed, true);
  await waitFor(() => errors.get(outside.stream));
  assert.equal(
    errors.get(outside.stream)!.message,
    'source address 192.0.2.7 is not in the list (the list changed)',
  );
  for (const c of [otherRepo, inside, otherTenant]) assert.equal(c.stream.destroyed, false);
  assert.equal(
    broker.cutRefused('acme', () => undefined),
    0,
    'nothing refused: nothing cut',
  );
  for (const c of [outside, otherRepo, inside, otherTenant]) {
    c.stream.destroy();
    c.close(0, 0);
  }
  assert.equal(broker.openCount(), 0);
});
