import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generateKeyPair } from '../../src/core/ssh-keys.js';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { type FakeGateway, type Msg, startFakeGateway } from '../helpers/fake-gateway.js';
import { tempDir, waitFor } from '../helpers/util.js';

/** A TCP server on every loopback form (127.0.0.1, ::1, ::ffff:127.0.0.1) that counts who arrives. */
async function trap(): Promise<{ port: number; hits: () => number; close(): Promise<void> }> {
  let hits = 0;
  const server = net.createServer((s) => {
    hits++;
    s.on('error', () => {});
    s.end('trap\n');
  });
  await new Promise<void>((r) => server.listen({ host: '::', port: 0, ipv6Only: false }, () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    hits: () => hits,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/**
 * A compromised gateway (a real SSH server speaking the real control protocol, under the test's
 * control) proposes targets just outside each rule of the customer's policy: every one is refused
 * with its reason, and nothing outside the policy is ever dialled, even when the gateway opens
 * connections on those labels anyway.
 */
describe('managed repositories: a compromised gateway cannot reach outside the policy', () => {
  let gw: FakeGateway;
  let conn: TestConnector;
  let allowed: Awaited<ReturnType<typeof trap>>;
  let other: Awaited<ReturnType<typeof trap>>;
  let A: number;
  let B: number;

  before(async () => {
    allowed = await trap();
    other = await trap();
    A = allowed.port;
    B = other.port;
    gw = await startFakeGateway();
    const dir = tempDir('tether-evil-');
    const keyFile = join(dir, 'key');
    writeFileSync(keyFile, generateKeyPair().privateKey, { mode: 0o600 });
    conn = await startConnector({
      gateway: gw.port,
      tenant: 'acme',
      keyFile,
      dir,
      repositories: { loc: { own: `tcp://127.0.0.1:${A}` } },
      config: {
        managed: {
          max_entries: 2,
          allow: [
            { cidr: '127.0.0.1/32', ports: String(A), services: ['tcp'] },
            { cidr: '10.0.0.0/24', ports: '445,139', services: ['smb'] },
            { host: '*.corp.example', ports: '443', services: ['webdav'] },
            { cidr: '0.0.0.0/0', ports: '9', services: ['tcp'] },
          ],
        },
      },
    });
  });

  after(async () => {
    await conn?.stop();
    await gw?.close();
    await allowed?.close();
    await other?.close();
  });

  const last = (label: string): Msg | undefined =>
    gw.messages.filter((m) => m.type === 'managed' && m.label === label).at(-1);
  const report = (label: string, state?: string) =>
    waitFor(
      () => {
        const m = last(label);
        return m && (state === undefined || m.state === state) ? m : null;
      },
      { timeout: 30_000, what: `the connector's report on ${label}` },
    );

  test('a proposal inside the policy is served and reaches its destination (the control)', async () => {
    gw.send({ type: 'propose', label: 'g/ok', uri: `tcp://127.0.0.1:${A}` });
    const m = await report('g/ok', 'serving');
    assert.equal(m.reason, null);
    await waitFor(() => gw.forwards.has('g/ok'), { what: 'the forward of g/ok' });
    const r = await gw.open('g/ok');
    assert.ok(r.ok, 'the connector accepts a connection on a served label');
    await waitFor(() => allowed.hits() === 1, { what: 'the connection at the allowed destination' });
  });

  const outside: Array<[string, string, RegExp]> = [
    ['other-port', `tcp://127.0.0.1:${0}`, /no rule allows port \d+ for tcp/],
    [
      'other-cidr',
      'tcp://127.0.0.2:A',
      /127\.0\.0\.2:\d+ is outside managed\.allow: 127\.0\.0\.2 is in none of the allowed blocks/,
    ],
    [
      'smb-other-cidr',
      'smb://10.0.1.5:445',
      /^10\.0\.1\.5:445 is outside managed\.allow: 10\.0\.1\.5 is in none of the allowed blocks \(10\.0\.0\.0\/24\)$/,
    ],
    ['smb-other-port', 'smb://10.0.0.5:446', /no rule allows port 446 for smb/],
    ['resolves-outside', 'smb://localhost:445', /localhost resolves to .*(127\.0\.0\.1|::1)/],
    ['numeric-name', 'smb://2130706433:445', /2130706433 resolves to 127\.0\.0\.1/],
    [
      'other-host',
      'webdav+https://files.other.example:443',
      /the host files\.other\.example matches none of the allowed host patterns \(\*\.corp\.example\)/,
    ],
    ['other-service', 'webdav+http://127.0.0.1:A', /no rule allows port \d+ for webdav/],
    [
      'v4-mapped',
      'tcp://[::ffff:127.0.0.1]:A',
      /::ffff:7f00:1 is an IPv6 form of 127\.0\.0\.1; IPv4 blocks do not cover it/,
    ],
    ['v4-mapped-hex', 'tcp://[::ffff:7f00:1]:A', /IPv6 form of 127\.0\.0\.1/],
    ['nat64', 'tcp://[64:ff9b::127.0.0.1]:A', /IPv6 form of 127\.0\.0\.1/],
    ['v6-loopback', 'tcp://[::1]:A', /::1 is in none of the allowed blocks/],
    ['unspecified', 'tcp://0.0.0.0:A', /0\.0\.0\.0 is never dialled/],
    ['unspecified-any-port-rule', 'tcp://0.0.0.0:9', /0\.0\.0\.0 is never dialled/],
    [
      'link-local',
      'tcp://169.254.1.1:9',
      /169\.254\.1\.1 is a link-local address, allowed only by a block inside 169\.254\.0\.0\/16/,
    ],
    [
      'loopback-by-wide-block',
      'tcp://127.0.0.1:9',
      /127\.0\.0\.1 is a loopback address of the connector, allowed only by a block inside 127\.0\.0\.0\/8/,
    ],
    ['broadcast', 'tcp://255.255.255.255:9', /never dialled/],
    ['bad-uri', 'ftp://10.0.0.5:21', /invalid URI: unknown service "ftp"/],
    ['credentials', 'smb://user:pw@10.0.0.5:445', /invalid URI: credentials do not belong in the URI/],
  ];

  test('targets just outside each rule are refused with the reason, and nothing is dialled', async () => {
    for (const [name, uri] of outside) {
      gw.send({
        type: 'propose',
        label: `x/${name}`,
        uri: uri.replace(':A', `:${A}`).replace(':0', `:${B}`),
      });
    }
    for (const [name, , re] of outside) {
      const m = await report(`x/${name}`);
      assert.equal(m.state, 'refused', `${name}: ${JSON.stringify(m)}`);
      assert.match(String(m.reason), re, name);
    }
    // The gateway opens connections on every refused label anyway: each is refused by the connector.
    for (const [name] of outside) {
      const r = await gw.open(`x/${name}`);
      assert.equal(r.ok, false, `${name} must not be dialled`);
    }
    assert.deepEqual(
      [...gw.forwards.keys()].sort(),
      ['g/ok', 'loc/own'],
      'only g/ok and the local entry are forwarded',
    );
    assert.equal(other.hits(), 0, 'nothing reached the port outside the policy');
    assert.equal(allowed.hits(), 1, 'nothing more reached the allowed one');
    // the connector log is the customer's audit trail
    await conn.output.wait(/"event":"managed\.refused".*x\/smb-other-cidr/, 10_000);
  });

  test('malformed, oversized and repeated proposals are refused; the session goes on', async () => {
    gw.send({ type: 'propose', label: '../../etc', uri: `tcp://127.0.0.1:${A}` });
    gw.send({ type: 'propose', label: 'g/num', uri: 42 });
    gw.send({ type: 'propose', label: 'g/long', uri: `tcp://127.0.0.1:${A}/${'a'.repeat(3000)}` });
    gw.send({ type: 'propose' });
    gw.send(`{"type":"propose","label":"g/huge","uri":"${'x'.repeat(70_000)}"}\n`);
    gw.send('this is not json\n');
    for (let i = 0; i < 50; i++) gw.send({ type: 'propose', label: 'g/ok', uri: `tcp://127.0.0.1:${A}` });
    assert.match(
      String((await report('g/num')).reason),
      /the URI must be a string of at most 2048 characters/,
    );
    assert.match(
      String((await report('g/long')).reason),
      /the URI must be a string of at most 2048 characters/,
    );
    await conn.output.wait(
      /managed proposal \.\.\/\.\.\/etc refused: the label must be <group>\/<repo>/,
      10_000,
    );
    assert.equal(last('g/huge'), undefined, 'an over-long control line is dropped whole');
    assert.equal(last('../../etc'), undefined);
    // repeated: still one forward, still serving, the connector still answers
    await waitFor(() => gw.messages.filter((m) => m.type === 'managed' && m.label === 'g/ok').length >= 50, {
      what: 'the repeated reports',
    });
    assert.equal(last('g/ok')?.state, 'serving');
    const st = await conn.status();
    assert.equal(st.repositories.filter((r) => r.label === 'g/ok').length, 1);
    assert.ok(st.connected);
  });

  test('max_entries bounds what the gateway can make the connector serve', async () => {
    gw.send({ type: 'propose', label: 'g/ok2', uri: `tcp://127.0.0.1:${A}/two` });
    gw.send({ type: 'propose', label: 'g/ok3', uri: `tcp://127.0.0.1:${A}/three` });
    assert.equal((await report('g/ok2')).state, 'serving');
    const m = await report('g/ok3');
    assert.equal(m.state, 'refused');
    assert.match(
      String(m.reason),
      /this connector serves at most 2 managed repositories \(managed\.max_entries\)/,
    );
  });

  test('a proposal cannot replace a local repository: the local entry wins', async () => {
    gw.send({ type: 'propose', label: 'loc/own', uri: `tcp://127.0.0.1:${A}/other` });
    const m = await report('loc/own');
    assert.equal(m.state, 'shadowed');
    assert.equal(m.reason, 'connect.yaml has its own loc/own: the local entry wins');
    const own = (await conn.status()).repositories.filter((r) => r.label === 'loc/own');
    assert.deepEqual(
      own.map((r) => `${r.source} ${r.uri}`),
      [`connect.yaml tcp://127.0.0.1:${A}`],
    );
  });

  test('unpropose ends the forward; a label never proposed is never dialled', async () => {
    gw.send({ type: 'unpropose', label: 'g/ok2' });
    await waitFor(() => !gw.forwards.has('g/ok2'), { what: 'the forward of g/ok2 to be cancelled' });
    assert.equal((await gw.open('g/ok2')).ok, false);
    assert.equal((await gw.open('g/never')).ok, false);
    const st = await conn.status();
    assert.deepEqual(
      st.repositories.filter((r) => r.source === 'managed').map((r) => r.label),
      ['g/ok'],
    );
    assert.equal(allowed.hits(), 1);
    assert.equal(other.hits(), 0);
  });
});
