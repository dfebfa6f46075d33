import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { after, describe, test } from 'node:test';
import { FakeClock } from '../../test/helpers/core.js';
import { type ConnectConfig, connectConfigFromText } from '../config/connect.js';
import { generateKeyPair } from '../core/ssh-keys.js';
import { TetherError } from '../errors/index.js';
import { silentLogger } from '../log/index.js';
import type { IncomingConnection, TunnelClientOptions, TunnelSession } from '../tunnel/client.js';
import type { ConnectorMessage } from '../tunnel/control-protocol.js';
import { Connector } from './supervisor.js';

/** Stands in for a TunnelSession: records what the connector asks of the gateway. */
class FakeSession extends EventEmitter {
  sent: ConnectorMessage[] = [];
  forwards: string[] = [];
  unforwards: Array<[string, number]> = [];
  hostFingerprint = 'SHA256:fake';
  welcome = { type: 'welcome' as const, tenant: 'acme', quota: 2, gateway: 'test' };
  isOpen = true;
  refuse = new Map<string, string>();
  /** Labels whose forward is answered only when the test calls `held.get(label)(port)`. */
  hold = new Set<string>();
  held = new Map<string, (port: number) => void>();
  private port = 30_000;
  send(m: ConnectorMessage): void {
    this.sent.push(m);
  }
  forward(label: string): Promise<number> {
    this.forwards.push(label);
    if (this.hold.has(label)) return new Promise((resolve) => this.held.set(label, resolve));
    const why = this.refuse.get(label);
    return why ? Promise.reject(new TetherError('TENANT_QUOTA_EXCEEDED', why)) : Promise.resolve(this.port++);
  }
  unforward(label: string, port: number): Promise<void> {
    this.unforwards.push([label, port]);
    return Promise.resolve();
  }
  close(): void {
    if (!this.isOpen) return;
    this.isOpen = false;
    this.emit('close', undefined);
  }
  drop(): void {
    this.isOpen = false;
    this.emit('close', new TetherError('GATEWAY_SESSION_FAILED', 'connection reset'));
  }
}

const tick = () => new Promise((r) => setImmediate(r));

/** The gateway sends `session` a connection for g/a (lease 30000) whose channel is `channel`. */
function connectionFor(
  session: EventEmitter,
  channel: Duplex,
  reject: () => void = () => assert.fail('must not reject'),
): void {
  session.emit('connection', {
    label: 'g/a',
    port: 30_000,
    info: { srcIP: '127.0.0.1', srcPort: 1, destIP: 'g/a', destPort: 30_000 },
    accept: () => channel as never,
    reject,
  });
}

/** A stream that takes what is written and never answers: a destination or a channel. */
const sink = () =>
  new Duplex({
    read() {},
    write(_chunk: Buffer, _enc, cb) {
      cb();
    },
  });

describe('Connector (supervisor)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-sup-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const keyFile = join(dir, 'key');
  writeFileSync(keyFile, generateKeyPair().privateKey, { mode: 0o600 });

  function config(repos: Record<string, string>, extra = ''): ConnectConfig {
    const lines = Object.entries(repos).map(([k, v]) => `    ${k}: "${v}"`);
    return connectConfigFromText(
      `gateway: "gw:2222"\ntenant: acme\nssh_key: "${keyFile}"\n${extra}repositories:\n  g:\n${lines.join('\n')}\n`,
      join(dir, 'connect.yaml'),
      {},
    );
  }

  function build(
    cfg: ConnectConfig,
    opts: {
      dial?: (h: string, p: number) => Promise<Socket>;
      refuse?: Map<string, string>;
      hold?: string[];
    } = {},
  ) {
    const clock = new FakeClock(1_000_000);
    const sessions: FakeSession[] = [];
    const opened: TunnelClientOptions[] = [];
    let failNext: Error | undefined;
    /** Labels whose forward the next sessions hold (see FakeSession.hold). */
    const holdFor = { labels: opts.hold ?? [] };
    const c = new Connector({
      config: cfg,
      logger: silentLogger(),
      agent: 'test',
      clock,
      random: () => 0.5,
      openSession: async (o) => {
        opened.push(o);
        if (failNext) {
          const e = failNext;
          failNext = undefined;
          throw e;
        }
        const s = new FakeSession();
        if (opts.refuse) s.refuse = opts.refuse;
        s.hold = new Set(holdFor.labels);
        sessions.push(s);
        return s as unknown as TunnelSession;
      },
      dial: opts.dial ?? (() => Promise.reject(new Error('connection refused'))),
    });
    return { c, clock, sessions, opened, holdFor, failOnce: (e: Error) => (failNext = e) };
  }

  test('connects as the tenant and forwards every repository, metadata first', async () => {
    const { c, sessions, opened } = build(config({ a: 'smb://fs:139', b: 'webdav+https://dav/x' }));
    c.start();
    await tick();
    assert.equal(opened[0]!.username, 'acme');
    const s = sessions[0]!;
    assert.deepEqual(s.forwards, ['g/a', 'g/b']);
    assert.deepEqual(s.sent[1], {
      type: 'repo',
      label: 'g/b',
      service: 'webdav',
      scheme: 'https',
      host: 'dav',
      port: 443,
      path: '/x',
    });
    const st = c.status();
    assert.equal(st.connected, true);
    assert.equal(st.fingerprint, 'SHA256:fake');
    assert.deepEqual(
      st.repositories.map((r) => [r.label, r.state, r.leasePort]),
      [
        ['g/a', 'active', 30_000],
        ['g/b', 'active', 30_001],
      ],
    );
    await c.stop();
  });

  test('a refused forward is rejected with the reason; a reload asks again', async () => {
    const refuse = new Map([['g/b', 'quota exceeded (1 of 1 in use)']]);
    const { c, sessions } = build(config({ a: 'http://h', b: 'http://h' }), { refuse });
    c.start();
    await tick();
    let b = c.status().repositories.find((r) => r.label === 'g/b')!;
    assert.equal(b.state, 'rejected');
    assert.equal(b.reason, 'quota exceeded (1 of 1 in use)');
    assert.equal(b.leasePort, null);
    refuse.clear(); // e.g. the operator raised the quota
    const r = c.apply(config({ a: 'http://h', b: 'http://h' }));
    assert.deepEqual(r, { added: [], removed: [], changed: [], reconnect: false });
    await tick();
    b = c.status().repositories.find((x) => x.label === 'g/b')!;
    assert.equal(b.state, 'active');
    assert.deepEqual(sessions[0]!.forwards, ['g/a', 'g/b', 'g/b']);
    await c.stop();
  });

  test('reload: added forwarded, removed cancelled, changed re-described, unchanged left alone', async () => {
    const { c, sessions } = build(config({ keep: 'tcp://db:5432', drop: 'http://old', move: 'http://a:80' }));
    c.start();
    await tick();
    const s = sessions[0]!;
    s.forwards = [];
    s.sent = [];
    const r = c.apply(config({ keep: 'tcp://db:5432', move: 'http://b:8080', add: 'ssh://box' }));
    await tick();
    assert.deepEqual(r, { added: ['g/add'], removed: ['g/drop'], changed: ['g/move'], reconnect: false });
    assert.deepEqual(s.forwards, ['g/add']);
    assert.deepEqual(s.unforwards, [['g/drop', 30_001]]);
    assert.deepEqual(
      s.sent.map((m) => (m.type === 'repo' ? `${m.label} ${m.host}:${m.port}` : m.type)),
      ['g/move b:8080', 'g/add box:22'],
    );
    const move = c.status().repositories.find((x) => x.label === 'g/move')!;
    assert.equal(move.leasePort, 30_002, 'a changed destination keeps its lease');
    assert.equal(sessions.length, 1, 'no new session');
    await c.stop();
  });

  test('a new gateway address means a new session', async () => {
    const { c, sessions, opened } = build(config({ a: 'http://h' }));
    c.start();
    await tick();
    const next = connectConfigFromText(
      `gateway: "gw2:2222"\ntenant: acme\nssh_key: "${keyFile}"\nrepositories:\n  g:\n    a: "http://h"\n`,
      join(dir, 'connect.yaml'),
      {},
    );
    assert.equal(c.apply(next).reconnect, true);
    await tick();
    assert.equal(sessions[0]!.isOpen, false);
    assert.equal(opened[1]!.host, 'gw2');
    assert.deepEqual(sessions[1]!.forwards, ['g/a']);
    await c.stop();
  });

  test('after a drop it reconnects with backoff and forwards everything again', async () => {
    const { c, sessions, clock, failOnce } = build(config({ a: 'http://h', b: 'http://h' }));
    c.start();
    await tick();
    failOnce(
      new TetherError('GATEWAY_UNREACHABLE', 'cannot reach the gateway at gw:2222: connect ECONNREFUSED', {
        retryable: true,
      }),
    );
    sessions[0]!.drop();
    let st = c.status();
    assert.equal(st.connected, false);
    assert.equal(st.lastError, 'connection reset');
    assert.deepEqual(
      st.repositories.map((r) => [r.state, r.leasePort]),
      [
        ['pending', 30_000],
        ['pending', 30_001],
      ],
    );
    clock.advance(250); // 0.5 × 500 ms
    await tick();
    st = c.status();
    assert.equal(st.lastError, 'cannot reach the gateway at gw:2222: connect ECONNREFUSED');
    assert.ok(st.nextRetryAt);
    clock.advance(500); // 0.5 × 1 s
    await tick();
    assert.equal(sessions.length, 2);
    assert.deepEqual(sessions[1]!.forwards, ['g/a', 'g/b']);
    assert.equal(c.status().connected, true);
    await c.stop();
  });

  test("the gateway's reconnect (a drain): a new session at once, forwards moved, the old session left once its connection ended", async () => {
    const dest = sink();
    const { c, sessions } = build(config({ a: 'tcp://db:5432', b: 'tcp://db:5433' }), {
      dial: () => Promise.resolve(dest as unknown as Socket),
    });
    c.start();
    await tick();
    const old = sessions[0]!;
    const channel = sink();
    connectionFor(old, channel);
    await tick();
    assert.equal(c.status().repositories[0]!.connections, 1);
    old.emit('message', { type: 'reconnect', reason: 'the gateway is shutting down (drain): reconnect now' });
    await tick();
    await tick();
    assert.equal(sessions.length, 2, 'a new session at once: no clock advance, no backoff');
    assert.deepEqual(sessions[1]!.forwards, ['g/a', 'g/b']);
    assert.deepEqual(old.unforwards, [
      ['g/a', 30_000],
      ['g/b', 30_001],
    ]);
    assert.equal(old.isOpen, true, 'the old session still carries a connection');
    assert.equal(c.status().connected, true);
    channel.destroy();
    dest.destroy();
    await tick();
    await tick();
    assert.equal(old.isOpen, false, 'left once its last connection ended');
    assert.equal(sessions[1]!.isOpen, true);
    await c.stop();
  });

  test('reconnect asked again within 10 s waits for the backoff; a move that finds no other gateway stays on the old session and reconnects at once when it closes', async () => {
    const { c, sessions, clock, opened, failOnce } = build(config({ a: 'http://h' }));
    c.start();
    await tick();
    sessions[0]!.emit('message', { type: 'reconnect', reason: 'drain' });
    await tick();
    await tick();
    assert.equal(sessions.length, 2);
    sessions[1]!.emit('message', { type: 'reconnect', reason: 'drain' });
    await tick();
    assert.equal(sessions.length, 2, 'no second move at once');
    assert.ok(c.status().nextRetryAt, 'a retry is scheduled');
    clock.advance(250); // 0.5 × 500 ms
    await tick();
    await tick();
    assert.equal(sessions.length, 3);

    // no other gateway answers: the old session keeps serving; it closes; at once a new one
    clock.advance(20_000);
    failOnce(new TetherError('GATEWAY_UNREACHABLE', 'connect ECONNREFUSED', { retryable: true }));
    const tries = opened.length;
    sessions[2]!.emit('message', { type: 'reconnect', reason: 'drain' });
    await tick();
    await tick();
    assert.equal(opened.length, tries + 1, 'tried at once');
    assert.equal(sessions[2]!.isOpen, true, 'still on the old session');
    assert.equal(c.status().nextRetryAt, null, 'no backoff while the old session serves');
    sessions[2]!.drop();
    await tick();
    await tick();
    assert.equal(opened.length, tries + 2, 'reconnected at once when the old session closed');
    assert.equal(sessions.length, 4);
    await c.stop();
  });

  test('a host key mismatch is fatal: no retry', async () => {
    const { c, clock, opened, failOnce } = build(config({ a: 'http://h' }));
    const fatal = new Promise<TetherError>((r) => c.once('fatal', r));
    failOnce(new TetherError('GATEWAY_HOST_KEY_MISMATCH', 'gateway host key mismatch …', { status: 403 }));
    c.start();
    assert.equal((await fatal).code, 'GATEWAY_HOST_KEY_MISMATCH');
    clock.advance(60_000);
    await tick();
    assert.equal(opened.length, 1);
    assert.equal(c.status().state, 'failed');
  });

  test('incoming connections: unknown labels are refused; a dead destination is rejected at once and withdrawn', async () => {
    const { c, sessions, clock } = build(config({ a: 'tcp://db:5432' }));
    c.start();
    await tick();
    const s = sessions[0]!;
    let rejected = 0;
    const conn = (label: string): IncomingConnection => ({
      label,
      port: 30_000,
      info: { srcIP: '127.0.0.1', srcPort: 1, destIP: label, destPort: 30_000 },
      accept: () => assert.fail('must not accept'),
      reject: () => rejected++,
    });
    s.emit('connection', conn('g/other'));
    assert.equal(rejected, 1);
    s.emit('connection', conn('g/a'));
    await tick();
    assert.equal(rejected, 2);
    const a = c.status().repositories[0]!;
    assert.equal(a.state, 'unreachable');
    assert.equal(a.reason, 'destination unreachable: db:5432: connection refused');
    assert.deepEqual(s.sent.at(-1), { type: 'withdraw', label: 'g/a', reason: a.reason });
    await c.stop();
    clock.advance(10_000);
  });

  test('an unreachable destination is probed after 250 ms, then at twice the wait up to 5 s; it is restored at the first probe that answers', async () => {
    let up = false;
    const dials: number[] = [];
    const { c, sessions, clock } = build(config({ a: 'tcp://db:5432' }), {
      dial: () => {
        dials.push(clock.now());
        if (!up) return Promise.reject(new Error('connection refused'));
        const sock = new Duplex({ read() {}, write: (_c, _e, cb) => cb() });
        return Promise.resolve(sock as unknown as Socket);
      },
    });
    c.start();
    await tick();
    const s = sessions[0]!;
    const caller = (): IncomingConnection => ({
      label: 'g/a',
      port: 30_000,
      info: { srcIP: '127.0.0.1', srcPort: 1, destIP: 'g/a', destPort: 30_000 },
      accept: () => assert.fail('must not accept'),
      reject: () => {},
    });
    s.emit('connection', caller());
    await tick();
    assert.deepEqual(s.sent.at(-1), {
      type: 'withdraw',
      label: 'g/a',
      reason: 'destination unreachable: db:5432: connection refused',
    });
    const start = clock.now();
    dials.length = 0;
    // still down: probes at +250, +750, +1750, +3750, +7750, +12750 (waits 250, 500, 1 s, 2 s, 4 s, 5 s)
    for (const wait of [250, 500, 1000, 2000, 4000, 5000]) {
      clock.advance(wait - 1);
      await tick();
      const before = dials.length;
      clock.advance(1);
      await tick();
      assert.equal(dials.length, before + 1, `a probe ${wait} ms after the last`);
    }
    assert.deepEqual(
      dials.map((t) => t - start),
      [250, 750, 1750, 3750, 7750, 12750],
    );
    assert.equal(c.status().repositories[0]!.state, 'unreachable');
    // back: the next probe (5 s later) restores it
    up = true;
    clock.advance(5000);
    await tick();
    assert.equal(c.status().repositories[0]!.state, 'active');
    assert.deepEqual(s.sent.at(-1), { type: 'restore', label: 'g/a' });

    // it fails again at once: a flapping destination does not start over at 250 ms
    up = false;
    s.emit('connection', caller());
    await tick();
    assert.equal(c.status().repositories[0]!.state, 'unreachable');
    dials.length = 0;
    clock.advance(4999);
    await tick();
    assert.equal(dials.length, 0, 'no probe within 5 s of the last restore');
    clock.advance(1);
    await tick();
    assert.equal(dials.length, 1);

    // down again long after it came back: the first probe is quick again
    up = true;
    clock.advance(5000);
    await tick();
    assert.equal(c.status().repositories[0]!.state, 'active');
    clock.advance(60_000);
    up = false;
    s.emit('connection', caller());
    await tick();
    dials.length = 0;
    clock.advance(250);
    await tick();
    assert.equal(dials.length, 1, 'probed 250 ms after a failure that follows a long healthy spell');
    await c.stop();
    clock.advance(10_000);
  });

  test('incoming connections are relayed to the configured destination and counted', async () => {
    const received: string[] = [];
    const sink = () =>
      new Duplex({
        read() {},
        write(chunk: Buffer, _enc, cb) {
          received.push(chunk.toString());
          cb();
        },
      });
    const dest = sink() as unknown as Socket;
    let dialed = '';
    const { c, sessions } = build(config({ a: 'tcp://db:5432' }), {
      dial: (h, p) => {
        dialed = `${h}:${p}`;
        return Promise.resolve(dest);
      },
    });
    c.start();
    await tick();
    const channel = sink();
    sessions[0]!.emit('connection', {
      label: 'g/a',
      port: 30_000,
      info: { srcIP: '127.0.0.1', srcPort: 1, destIP: 'g/a', destPort: 30_000 },
      accept: () => channel as never,
      reject: () => assert.fail('must not reject'),
    });
    await tick();
    assert.equal(dialed, 'db:5432');
    channel.push('abc');
    await tick();
    assert.deepEqual(received, ['abc'], 'bytes from the channel reach the destination');
    const a = c.status().repositories[0]!;
    assert.equal(a.connections, 1);
    assert.equal(a.totalConnections, 1);
    assert.ok(a.bytesIn >= 3);
    await c.stop();
  });
  /** Builds a connector serving g/a and g/b whose destination accepts; `carry()` opens a connection on session 0. */
  async function carrying(o: { hold?: string[] } = {}) {
    const dests: Duplex[] = [];
    const b = build(config({ a: 'tcp://db:5432', b: 'tcp://db:5433' }), {
      hold: o.hold,
      dial: () => {
        const d = sink();
        dests.push(d);
        return Promise.resolve(d as unknown as Socket);
      },
    });
    b.c.start();
    await tick();
    const carry = async () => {
      const channel = sink();
      connectionFor(b.sessions[0]!, channel);
      await tick();
      return channel;
    };
    return { ...b, carry, dests };
  }

  test('a draining stop cancels every forward, lets the open connections finish, then closes the session', async () => {
    const { c, sessions, carry, dests } = await carrying();
    const one = await carry();
    const two = await carry();
    assert.equal(c.status().repositories[0]!.connections, 2);
    let result: unknown;
    const stopped = c.stop(5_000).then((r) => {
      result = r;
    });
    await tick();
    const s = sessions[0]!;
    assert.deepEqual(s.unforwards, [
      ['g/a', 30_000],
      ['g/b', 30_001],
    ]);
    assert.equal(c.status().state, 'draining');
    assert.equal(s.isOpen, true, 'the session carries the open connections meanwhile');
    one.destroy();
    await tick();
    await tick();
    assert.equal(s.isOpen, true, 'one connection is still open');
    assert.equal(result, undefined);
    two.destroy();
    for (const d of dests) d.destroy();
    await stopped;
    assert.equal(s.isOpen, false, 'closed once the last connection ended');
    assert.deepEqual(result, { drained: true, cut: 0, durationMs: 0 });
    assert.equal(c.status().state, 'stopped');
    assert.equal(sessions.length, 1, 'no reconnect while or after stopping');
  });

  test('a draining stop cuts what is still open at drain_timeout; a second stop cuts at once', async () => {
    const late = await carrying();
    const held = await late.carry();
    let result: unknown;
    const stopped = late.c.stop(5_000).then((r) => {
      result = r;
    });
    await tick();
    late.clock.advance(4_999);
    await tick();
    assert.equal(result, undefined, 'still draining before drain_timeout');
    assert.equal(late.sessions[0]!.isOpen, true);
    late.clock.advance(1);
    await stopped;
    assert.deepEqual(result, { drained: true, cut: 1, durationMs: 5_000 });
    assert.equal(late.sessions[0]!.isOpen, false, 'the session (and with it the connection) is closed');
    held.destroy();

    const impatient = await carrying();
    await impatient.carry();
    const first = impatient.c.stop(60_000);
    await tick();
    impatient.clock.advance(1_000);
    const second = await impatient.c.stop(60_000);
    assert.deepEqual(second, { drained: true, cut: 1, durationMs: 1_000 });
    assert.deepEqual(await first, second, 'both stops resolve with the same outcome');
    assert.equal(impatient.sessions[0]!.isOpen, false);
    assert.equal(impatient.clock.pending, 0, 'no drain timer left behind');
  });

  test('a reload that removes a repository cancels its forward; its open connections finish within drain_timeout, then the rest are cut; the others are not touched', async () => {
    const { c, sessions, carry, clock } = await carrying();
    const one = await carry();
    const two = await carry();
    const s = sessions[0]!;
    const r = c.apply(config({ b: 'tcp://db:5433' }));
    await tick();
    assert.deepEqual(r.removed, ['g/a']);
    assert.deepEqual(s.unforwards, [['g/a', 30_000]], 'the gateway sends no new connection for it');
    assert.equal(one.destroyed || two.destroyed, false, 'its open connections go on');
    assert.deepEqual(c.status().finishing, [
      { label: 'g/a', connections: 2, cutAt: new Date(clock.now() + 5_000).toISOString() },
    ]);
    one.destroy();
    await tick();
    assert.equal(c.status().finishing?.[0]?.connections, 1);
    clock.advance(4_999);
    await tick();
    assert.equal(two.destroyed, false, 'still carried before drain_timeout (5 s)');
    clock.advance(1);
    await tick();
    assert.equal(two.destroyed, true, 'cut at drain_timeout');
    assert.deepEqual(c.status().finishing, [], 'nothing finishing any more');
    assert.equal(s.isOpen, true, 'the session goes on');
    assert.deepEqual(
      c.status().repositories.map((x) => x.label),
      ['g/b'],
    );
    await c.stop();
    assert.equal(clock.pending, 0, 'no timer left behind');
  });

  test('a removed repository whose connections all finish leaves no timer; a stop cuts one still finishing; drain_timeout 0 cuts at once', async () => {
    const early = await carrying();
    const done = await early.carry();
    early.c.apply(config({ b: 'tcp://db:5433' }));
    await tick();
    const pending = early.clock.pending;
    done.destroy();
    await tick();
    await tick();
    assert.equal(early.clock.pending, pending - 1, 'the drain timer went with the last connection');
    await early.c.stop();

    const stopped = await carrying();
    const held = await stopped.carry();
    stopped.c.apply(config({ b: 'tcp://db:5433' }));
    await tick();
    assert.equal(held.destroyed, false);
    await stopped.c.stop();
    assert.equal(held.destroyed, true, 'the stop cut it');
    assert.equal(stopped.clock.pending, 0, 'and its drain timer');

    const now = await carrying();
    const cutNow = await now.carry();
    now.c.apply(config({ b: 'tcp://db:5433' }, 'drain_timeout: 0\n'));
    await tick();
    assert.equal(cutNow.destroyed, true, 'drain_timeout 0: cut with the removal');
    await now.c.stop();
  });

  test('removed, added back and removed again while its connection finishes: the old connection keeps its own drain, the new repository serves, a stop cuts it and leaves no timer', async () => {
    const { c, sessions, carry, clock } = await carrying();
    const old = await carry();
    const s = sessions[0]!;
    c.apply(config({ b: 'tcp://db:5433' }));
    await tick();
    c.apply(config({ a: 'tcp://db:5432', b: 'tcp://db:5433' }));
    await tick();
    assert.deepEqual(s.forwards.slice(-1), ['g/a'], 'asked for again');
    assert.equal(old.destroyed, false, 'the old connection still finishing');
    const fresh = await carry();
    assert.equal(
      c.status().repositories.find((r) => r.label === 'g/a')?.connections,
      1,
      'the new one counts',
    );
    c.apply(config({ b: 'tcp://db:5433' }));
    await tick();
    assert.deepEqual(
      c.status().finishing?.map((f) => [f.label, f.connections]),
      [
        ['g/a', 1],
        ['g/a', 1],
      ],
      'each removal drains its own connections',
    );
    clock.advance(2_000);
    old.destroy();
    await tick();
    assert.deepEqual(
      c.status().finishing?.map((f) => f.connections),
      [1],
      'the first drain ended with its connection',
    );
    await c.stop();
    assert.equal(fresh.destroyed, true, 'the stop cut the one still finishing');
    assert.deepEqual(c.status().finishing, []);
    assert.equal(clock.pending, 0, 'no drain timer left behind');
  });

  test('a stop without connections, or with drain_timeout 0, closes at once without cancelling forwards', async () => {
    const idle = await carrying();
    assert.deepEqual(await idle.c.stop(5_000), { drained: false, cut: 0, durationMs: 0 });
    assert.equal(idle.sessions[0]!.isOpen, false);
    assert.deepEqual(idle.sessions[0]!.unforwards, []);
    const busy = await carrying();
    await busy.carry();
    assert.deepEqual(await busy.c.stop(0), { drained: false, cut: 1, durationMs: 0 });
    assert.equal(busy.sessions[0]!.isOpen, false);
  });

  test('a forward granted while the connector drains is cancelled at once', async () => {
    const { c, sessions, carry } = await carrying({ hold: ['g/b'] });
    await carry();
    const s = sessions[0]!;
    const stopped = c.stop(5_000);
    await tick();
    assert.deepEqual(s.unforwards, [['g/a', 30_000]], 'g/b is not granted yet');
    s.held.get('g/b')!(30_007);
    await tick();
    assert.deepEqual(s.unforwards, [
      ['g/a', 30_000],
      ['g/b', 30_007],
    ]);
    assert.equal(c.status().repositories[1]!.state, 'pending', 'not counted as served');
    await c.stop();
    await stopped;
  });

  test('a draining stop during a move cancels what the session being left still forwards', async () => {
    const { c, sessions, carry, holdFor } = await carrying();
    const channel = await carry();
    const old = sessions[0]!;
    holdFor.labels = ['g/a', 'g/b']; // the new session gets no forward before the stop
    old.emit('message', { type: 'reconnect', reason: 'drain' });
    await tick();
    await tick();
    assert.equal(sessions.length, 2);
    assert.deepEqual(old.unforwards, [], 'nothing moved yet');
    const stopped = c.stop(5_000);
    await tick();
    assert.deepEqual(old.unforwards, [
      ['g/a', 30_000],
      ['g/b', 30_001],
    ]);
    assert.equal(old.isOpen, true, 'it still carries the connection');
    sessions[1]!.held.get('g/a')!(31_000);
    await tick();
    assert.deepEqual(sessions[1]!.unforwards, [['g/a', 31_000]], 'granted while stopping: cancelled');
    channel.destroy();
    const r = await stopped;
    assert.equal(r.cut, 0);
    assert.equal(old.isOpen, false);
    assert.equal(sessions[1]!.isOpen, false);
  });

  test('a draining stop waits for a connection whose destination is still being dialled, and for one refused meanwhile', async () => {
    const dials: Array<{ resolve: (s: Socket) => void; reject: (e: Error) => void }> = [];
    const { c, sessions } = build(config({ a: 'tcp://db:5432' }), {
      dial: () => new Promise<Socket>((resolve, reject) => dials.push({ resolve, reject })),
    });
    c.start();
    await tick();
    const s = sessions[0]!;
    const channel = sink();
    connectionFor(s, channel);
    let rejected = 0;
    connectionFor(s, sink(), () => rejected++);
    await tick();
    assert.equal(dials.length, 2, 'both destinations are being dialled');
    let result: unknown;
    const stopped = c.stop(5_000).then((r) => {
      result = r;
    });
    await tick();
    assert.equal(c.status().state, 'draining', 'it waits for the connections being dialled');
    dials[1]!.reject(new Error('connection refused'));
    await tick();
    assert.equal(rejected, 1, 'the gateway is told at once');
    assert.equal(result, undefined, 'one still dialling');
    const dest = sink();
    dials[0]!.resolve(dest as unknown as Socket);
    await tick();
    assert.equal(c.status().repositories[0]!.connections, 1, 'carried once dialled');
    assert.equal(s.isOpen, true);
    channel.destroy();
    dest.destroy();
    await stopped;
    assert.deepEqual(result, { drained: true, cut: 0, durationMs: 0 });
    assert.equal(s.isOpen, false);
  });
});
