import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, test } from 'node:test';
import { FakeClock, tempStore } from '../../test/helpers/core.js';
import { isTetherError, TetherError } from '../errors/index.js';
import { silentLogger } from '../log/index.js';
import { type ForwardEndpoint, ForwardRegistry, type LiveSession } from './forward-registry.js';
import { TrafficLimits } from './limits.js';
import { MeteredDuplex } from './token-bucket.js';

const origin = { address: '127.0.0.1', port: 1 };

function session(id: string): LiveSession {
  return {
    id,
    tenant: 'acme',
    source: `10.0.0.${id}:22`,
    since: 0,
    fingerprint: '',
    agent: 'test',
    end() {},
  };
}

function endpoint(id: string, served: string[], fail = false): ForwardEndpoint {
  return {
    session: session(id),
    connections: 0,
    open: async () => {
      if (fail) throw new Error('channel open failed');
      served.push(id);
      return new PassThrough();
    },
  };
}

async function registryWithLimits() {
  const store = await tempStore();
  const now = new Date().toISOString();
  await store.insertTenant({ id: 'acme', quota: 20, created_at: now, updated_at: now });
  const clock = new FakeClock();
  const limits = new TrafficLimits(store, clock, silentLogger());
  await limits.start();
  const registry = new ForwardRegistry(clock);
  registry.limits = limits;
  return { store, limits, registry };
}

describe('ForwardRegistry: several connectors for one label', () => {
  test('round robin alternates between two connectors', async () => {
    const r = new ForwardRegistry(new FakeClock());
    const served: string[] = [];
    r.add('acme', 'g/web', 3000, endpoint('1', served), null);
    r.add('acme', 'g/web', 3000, endpoint('2', served), null);
    for (let i = 0; i < 6; i++) (await r.open('acme', 'g/web', origin)).close(0, 0);
    assert.deepEqual(served, ['1', '2', '1', '2', '1', '2']);
  });

  test('a connector that does not accept is skipped: the next one gets the connection', async () => {
    const r = new ForwardRegistry(new FakeClock());
    const served: string[] = [];
    r.add('acme', 'g/web', 3000, endpoint('1', served, true), null);
    r.add('acme', 'g/web', 3000, endpoint('2', served), null);
    for (let i = 0; i < 4; i++) (await r.open('acme', 'g/web', origin)).close(0, 0);
    assert.deepEqual(served, ['2', '2', '2', '2']);
    assert.equal(r.get('acme', 'g/web')!.connections, 0);
    assert.equal(r.openConnections(), 0);
  });

  test('withdrawn connectors get nothing; all withdrawn is FORWARD_WITHDRAWN; removing one keeps the lease', async () => {
    const r = new ForwardRegistry(new FakeClock());
    const served: string[] = [];
    const a = endpoint('1', served);
    const b = endpoint('2', served);
    assert.equal(r.add('acme', 'g/web', 3000, a, null), true);
    assert.equal(r.add('acme', 'g/web', 3000, b, null), false);
    a.withdrawn = 'health check failed';
    for (let i = 0; i < 3; i++) (await r.open('acme', 'g/web', origin)).close(0, 0);
    assert.deepEqual(served, ['2', '2', '2']);
    b.withdrawn = 'destination unreachable';
    await assert.rejects(r.open('acme', 'g/web', origin), (e: unknown) =>
      isTetherError(e, 'FORWARD_WITHDRAWN'),
    );
    a.withdrawn = undefined;
    assert.equal(r.remove('acme', 'g/web', a), false, 'the lease stays while a connector is left');
    assert.equal(r.byPort(3000)?.label, 'g/web');
    assert.equal(r.remove('acme', 'g/web', b), true);
  });

  test('least connections: new connections go to the connector with the fewest open', async () => {
    const { registry: r, limits, store } = await registryWithLimits();
    await limits.change('acme', '', { balance: 'least-connections' });
    const served: string[] = [];
    r.add('acme', 'g/web', 3000, endpoint('1', served), null);
    r.add('acme', 'g/web', 3000, endpoint('2', served), null);
    const held = await r.open('acme', 'g/web', origin); // on 1
    for (let i = 0; i < 3; i++) (await r.open('acme', 'g/web', origin)).close(0, 0);
    assert.deepEqual(served, ['1', '2', '2', '2']);
    held.close(0, 0);
    await limits.stop();
    await store.close();
  });

  test('caps are checked before a connector is asked; concurrent opens cannot all pass', async () => {
    const { registry: r, limits, store } = await registryWithLimits();
    await limits.change('acme', '', { maxConnections: 3 });
    const served: string[] = [];
    r.add('acme', 'g/web', 3000, endpoint('1', served), null);
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, () => r.open('acme', 'g/web', origin)),
    );
    const ok = results.filter((x) => x.status === 'fulfilled');
    const refused = results.filter((x) => x.status === 'rejected') as PromiseRejectedResult[];
    assert.equal(ok.length, 3);
    assert.equal(refused.length, 2);
    assert.equal((refused[0]!.reason as Error).message, 'too many connections (3 of 3)');
    assert.equal(r.openConnections('acme'), 3);
    for (const x of ok)
      (x as PromiseFulfilledResult<{ close(a: number, b: number): void }>).value.close(10, 20);
    assert.equal(r.openConnections('acme'), 0);
    assert.equal(limits.view('acme').usage.bytes, 90, 'unmetered connections count at close');
    assert.ok(await r.open('acme', 'g/web', origin));
    await limits.stop();
    await store.close();
  });

  test('a spent quota refuses a caller with its reason before relaying it to the process serving the repository', async () => {
    const { registry: r, limits, store } = await registryWithLimits();
    await limits.change('acme', '', { trafficLimit: 100, trafficPeriod: 'month' });
    const relayed: string[] = [];
    r.remoteOpener = async (remote) => {
      relayed.push(remote.node);
      return new PassThrough();
    };
    r.setRemote([
      { tenant: 'acme', label: 'g/web', port: 3000, node: 'worker-2', address: '127.0.0.1', connectors: 1 },
    ]);
    (await r.open('acme', 'g/web', origin)).close(0, 0);
    assert.deepEqual(relayed, ['worker-2'], 'relayed while the quota lasted');
    // the owner counts a relayed connection's bytes; they reach this process's counts
    limits.account('acme', 'g/web', 60, 60);
    await assert.rejects(r.open('acme', 'g/web', origin), (e: unknown) => {
      assert.ok(isTetherError(e));
      assert.equal(e.code, 'TRAFFIC_QUOTA_EXHAUSTED');
      assert.equal(e.status, 429);
      assert.match(e.message, /^traffic quota exhausted \(100 B/);
      return true;
    });
    assert.deepEqual(relayed, ['worker-2'], 'not relayed once spent');
    await limits.stop();
    await store.close();
  });

  test("the owner's refusal that is the caller's answer (a cap) is passed on as is: no other owner tried, no 502", async () => {
    const r = new ForwardRegistry(new FakeClock());
    const asked: string[] = [];
    r.remoteOpener = async (remote) => {
      asked.push(remote.node);
      throw new TetherError('CONNECTION_LIMIT', 'too many connections to g/web (2 of 2)', { status: 429 });
    };
    const at = (node: string) => ({
      tenant: 'acme',
      label: 'g/web',
      port: 3000,
      node,
      address: '127.0.0.1',
      connectors: 1,
    });
    r.setRemote([at('worker-2'), at('worker-3')]);
    await assert.rejects(r.open('acme', 'g/web', origin), (e: unknown) => {
      assert.ok(isTetherError(e, 'CONNECTION_LIMIT'));
      assert.equal(e.status, 429);
      assert.equal(e.message, 'too many connections to g/web (2 of 2)');
      return true;
    });
    assert.equal(asked.length, 1, 'asked one owner');
    // a refusal that is not the caller's answer still tries the next owner
    let n = 0;
    r.remoteOpener = async () => {
      if (n++ === 0) throw new Error('the owner refused the relayed connection (closed it)');
      return new PassThrough();
    };
    (await r.open('acme', 'g/web', origin)).close(0, 0);
    assert.equal(n, 2);
  });

  test('a capped tenant gets a metered stream; its bytes count as they pass, not again at close', async () => {
    const { registry: r, limits, store } = await registryWithLimits();
    await limits.change('acme', '', { bandwidthDown: 10_000_000 });
    r.add('acme', 'g/web', 3000, endpoint('1', []), null);
    const c = await r.open('acme', 'g/web', origin);
    assert.ok(c.stream instanceof MeteredDuplex);
    c.stream.write(Buffer.alloc(100));
    await new Promise((res) => setImmediate(res));
    c.close(100, 0);
    assert.equal(limits.view('acme').usage.bytes_in, 100);
    c.stream.destroy();
    await limits.stop();
    await store.close();
  });
});

describe('ForwardRegistry: a forward moving between cluster members (drain handover)', () => {
  const remoteAt = (node: string) => ({
    tenant: 'acme',
    label: 'g/web',
    port: 3000,
    node,
    address: `10.0.0.${node.length}`,
    connectors: 1,
  });

  test('the connector here declines as it leaves; the caller waits for the directory and is relayed to the member that has the forward now', async () => {
    const clock = new FakeClock();
    const r = new ForwardRegistry(clock);
    const relayedTo: string[] = [];
    r.remoteOpener = async (remote) => {
      relayedTo.push(remote.node);
      return new PassThrough();
    };
    const leaving = endpoint('1', [], true);
    r.add('acme', 'g/web', 3000, leaving, null);
    // the channel open fails because the session is closing: its forward is gone when it fails
    leaving.open = async () => {
      r.remove('acme', 'g/web', leaving);
      throw new Error('session closed');
    };
    const opened = r.open('acme', 'g/web', origin);
    await new Promise((res) => setImmediate(res));
    assert.deepEqual(relayedTo, [], 'nothing to relay to yet');
    r.setRemote([remoteAt('gw2')]);
    const c = await opened;
    assert.deepEqual(relayedTo, ['gw2']);
    c.close(0, 0);
  });

  test('no change within the bound: the refusal stands, after at most 2 s', async () => {
    const clock = new FakeClock();
    const r = new ForwardRegistry(clock);
    r.remoteOpener = async () => new PassThrough();
    const leaving = endpoint('1', []);
    r.add('acme', 'g/web', 3000, leaving, null);
    leaving.open = async () => {
      r.remove('acme', 'g/web', leaving);
      throw new Error('session closed');
    };
    const opened = r.open('acme', 'g/web', origin);
    await new Promise((res) => setImmediate(res));
    clock.advance(2_000);
    await assert.rejects(opened, /the connector for g\/web did not accept the connection/);
  });

  test('a connector that stays and declines (its service is down) is answered at once, in a cluster too', async () => {
    const r = new ForwardRegistry(new FakeClock());
    r.remoteOpener = async () => new PassThrough();
    r.add('acme', 'g/web', 3000, endpoint('1', [], true), null);
    await assert.rejects(r.open('acme', 'g/web', origin), /did not accept the connection/);
  });

  test('a relayed connection is never relayed back: every holder withdrawn, it is refused with the reason instead of passed between them', async () => {
    const r = new ForwardRegistry(new FakeClock());
    const relayedTo: string[] = [];
    r.remoteOpener = async (remote) => {
      relayedTo.push(remote.node);
      return new PassThrough();
    };
    const here = endpoint('1', []);
    here.withdrawn = 'connect ECONNREFUSED 127.0.0.1:80';
    r.add('acme', 'g/web', 3000, here, null);
    assert.deepEqual(r.setRemote([remoteAt('gw2')], 'cluster'), []);
    assert.deepEqual(r.setRemote([{ ...remoteAt('gw1/worker-2'), sibling: true }], 'workers'), []);
    assert.equal(r.relaysPort(3000), true);
    // from another worker: served here or not at all
    const fromWorker = r.open('acme', 'g/web', origin, { reach: 'none' });
    await assert.rejects(
      fromWorker,
      /repository g\/web of acme is unavailable \(its connectors cannot reach it\)/,
    );
    assert.deepEqual(relayedTo, []);
    // from another member: on to this member's own workers only
    for (let i = 0; i < 4; i++) (await r.open('acme', 'g/web', origin, { reach: 'siblings' })).close(0, 0);
    assert.deepEqual(relayedTo, ['gw1/worker-2', 'gw1/worker-2', 'gw1/worker-2', 'gw1/worker-2']);
    // a caller's own connection: anywhere
    relayedTo.length = 0;
    for (let i = 0; i < 12; i++) (await r.open('acme', 'g/web', origin)).close(0, 0);
    assert.deepEqual([...new Set(relayedTo)].sort(), ['gw1/worker-2', 'gw2']);
    // the other member's forward leaves: its port is no longer relayed from here, though a
    // sibling worker still serves it (that does not keep a listener here)
    assert.deepEqual(r.setRemote([], 'cluster'), [3000]);
    assert.equal(r.relaysPort(3000), false);
  });

  test('the old owner refuses the relay (its forward just left): the caller waits and is served by the forward that arrived here', async () => {
    const clock = new FakeClock();
    const r = new ForwardRegistry(clock);
    const relayedTo: string[] = [];
    r.remoteOpener = async (remote) => {
      relayedTo.push(remote.node);
      throw new Error('the owner refused the relayed connection (closed it)');
    };
    r.setRemote([remoteAt('gw1')]);
    const served: string[] = [];
    const opened = r.open('acme', 'g/web', origin);
    await new Promise((res) => setImmediate(res));
    assert.deepEqual(relayedTo, ['gw1']);
    r.add('acme', 'g/web', 3000, endpoint('9', served), null);
    (await opened).close(0, 0);
    assert.deepEqual(served, ['9']);
    // and a refusal with nothing changing within the bound is the caller's answer
    const r2 = new ForwardRegistry(clock);
    r2.remoteOpener = async () => {
      throw new Error('refused');
    };
    r2.setRemote([remoteAt('gw1')]);
    const lost = r2.open('acme', 'g/web', origin);
    await new Promise((res) => setImmediate(res));
    clock.advance(2_000);
    await assert.rejects(lost, /no cluster member that serves g\/web accepted the connection/);
  });
});
