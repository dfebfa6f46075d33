import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import ssh2 from 'ssh2';
import { openControlSession } from '../helpers/control-session.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { key, scrape } from '../helpers/prometheus.js';
import { tryLogin } from '../helpers/ssh-login.js';
import { proxyPort } from '../helpers/sshd.js';
import { waitFor } from '../helpers/util.js';

const AUTH_TIMEOUT = 8_000;
const PER_SOURCE = 8;

/**
 * Keeps `n` connections from `from` open to `port` (silent ones, or ones that send only an SSH
 * identification line), opening a new one whenever one closes, until stopped.
 */
function flood(port: number, from: string, n: number, identOnly: boolean) {
  let stopped = false;
  const open = new Set<net.Socket>();
  const connectedAt = new Map<net.Socket, number>();
  let refusedFast = 0;
  const one = () => {
    if (stopped) return;
    const s = net.connect({ host: '127.0.0.1', port, localAddress: from });
    const t0 = Date.now();
    s.on('error', () => {});
    s.on('connect', () => {
      connectedAt.set(s, Date.now());
      if (identOnly) s.write('SSH-2.0-Mallory_1.0\r\n');
    });
    open.add(s);
    s.on('close', () => {
      open.delete(s);
      connectedAt.delete(s);
      if (Date.now() - t0 < 1000) refusedFast++;
      // back off a little so a refused flood does not spin the test process
      setTimeout(one, 20);
    });
  };
  for (let i = 0; i < n; i++) one();
  return {
    /** Connections the gateway has kept open for 3 s or more (a refused one is closed at once). */
    held: () => [...connectedAt.values()].filter((t) => Date.now() - t >= 3_000).length,
    refused: () => refusedFast,
    stop: () => {
      stopped = true;
      for (const s of open) s.destroy();
    },
  };
}

/** A fresh ed25519 key. ssh2 now and then writes one its own parser calls malformed: take another. */
function anyKey(): string {
  for (;;) {
    const k = ssh2.utils.generateKeyPairSync('ed25519').private;
    if (!(ssh2.utils.parseKey(k) instanceof Error)) return k;
  }
}

describe('login bounds: per-source unauthenticated cap, enrollment logins', () => {
  let gw: TestGateway;
  let acmeKey: string;
  let sshProxy: number;
  const refused = async (reason: string) =>
    (await scrape(`${gw.adminUrl}/metrics`, { authorization: `Bearer ${gw.adminToken}` })).get(
      key('tether_refused_total', { reason }),
    ) ?? 0;

  before(async () => {
    gw = await startGateway({
      config: {
        tunnel: {
          auth_timeout: `${AUTH_TIMEOUT}ms`,
          max_unauthenticated: 64,
          max_unauthenticated_per_source: PER_SOURCE,
          login_throttle: { max_failures: 3, window: '10m', block_for: '10m' },
        },
        ssh_proxy: {
          listen: '127.0.0.1:0',
          handshake_timeout: '30s',
          max_unauthenticated: 64,
          max_unauthenticated_per_source: PER_SOURCE,
          login_throttle: { max_failures: 1000 },
          realms: {
            static: {
              type: 'static',
              credential: 'right-password',
              targets: {
                t: [
                  {
                    host: '127.0.0.1',
                    port: 1,
                    user: 'u',
                    password: 'p',
                    insecure_skip_host_key_check: true,
                  },
                ],
              },
            },
          },
        },
      },
    });
    acmeKey = await gw.addTenant('acme');
    sshProxy = await proxyPort(gw);
  });
  after(async () => {
    await gw?.stop();
  });

  test('tunnel port: one address flooding silent and identification-only sockets holds at most 8 slots; a tenant from elsewhere logs in and forwards', async (t) => {
    const silent = flood(gw.sshPort, '127.0.0.2', 40, false);
    const ident = flood(gw.sshPort, '127.0.0.2', 40, true);
    try {
      await waitFor(() => silent.refused() + ident.refused() > 100, {
        timeout: 30_000,
        what: 'refusals of the flood',
      });
      await new Promise((r) => setTimeout(r, 3_500)); // the held ones are 3 s old by now
      const held = silent.held() + ident.held();
      t.diagnostic(`held ${held}, refused ${silent.refused() + ident.refused()} so far`);
      assert.equal(held, PER_SOURCE, `the flooding address holds ${held} slots`);
      // while the flood goes on, a tenant from 127.0.0.1 logs in and forwards
      const s = await openControlSession({ port: gw.sshPort, user: 'acme', keyFile: acmeKey });
      assert.equal(typeof (await s.forward('grp/web')), 'number');
      s.end();
      await s.closed;
      assert.equal(await tryLogin(gw.sshPort, { user: 'acme', key: acmeKey, from: '127.0.0.3' }), 'ok');
    } finally {
      silent.stop();
      ident.stop();
    }
    await waitFor(async () => (await refused('unauthenticated_per_source')) > 100, {
      timeout: 30_000,
      what: 'tether_refused_total{reason="unauthenticated_per_source"}',
    });
    await gw.output.wait(
      /"event":"bound\.refused","reason":"unauthenticated_per_source".*max_unauthenticated_per_source 8/,
    );
  });

  test('SSH front door: the same flood holds at most 8 slots; a user from elsewhere still reaches the login', async () => {
    const before = await refused('unauthenticated_per_source');
    const silent = flood(sshProxy, '127.0.0.2', 40, false);
    const ident = flood(sshProxy, '127.0.0.2', 40, true);
    try {
      await waitFor(() => silent.refused() + ident.refused() > 100, {
        timeout: 30_000,
        what: 'refusals of the flood',
      });
      await new Promise((r) => setTimeout(r, 3_500));
      assert.equal(silent.held() + ident.held(), PER_SOURCE);
      // reaching the password prompt and being refused there means the connection was let in
      assert.match(
        await tryLogin(sshProxy, { user: 'static:t/0', password: 'wrong', from: '127.0.0.1' }),
        /All configured authentication methods failed/,
      );
    } finally {
      silent.stop();
      ident.stop();
    }
    await waitFor(async () => (await refused('unauthenticated_per_source')) > before + 100, {
      timeout: 30_000,
      what: 'the SSH front door refusals counted',
    });
  });

  test('an enrollment login gets one channel and one token attempt, and is closed after it', async () => {
    const s = await openControlSession({
      port: gw.sshPort,
      user: 'tether-enroll',
      privateKey: anyKey(),
      from: '127.0.0.4',
    });
    const second = await new Promise<string>((resolve) =>
      s.client.exec('true', (err) => resolve(err ? err.message : 'open')),
    );
    assert.match(second, /open failure|prohibited/i, 'a second channel is refused');
    s.send({ type: 'enroll', token: 'wrong-1' });
    const m = await s.waitMessage((x) => x.type === 'error');
    assert.equal(m.code, 'ENROLLMENT_INVALID');
    s.send({ type: 'enroll', token: 'wrong-2' });
    await s.closed;
    assert.equal(s.messages.filter((x) => x.type === 'error').length, 1, 'one attempt, one answer');
  });

  test('an idle enrollment login counts as unauthenticated and is closed at the auth timeout', async (t) => {
    const from = '127.0.0.9';
    const sessions = await Promise.all(
      Array.from({ length: PER_SOURCE }, () =>
        openControlSession({ port: gw.sshPort, user: 'tether-enroll', privateKey: anyKey(), from }),
      ),
    );
    const t0 = Date.now();
    assert.doesNotMatch(
      await tryLogin(gw.sshPort, { user: 'acme', key: acmeKey, from }),
      /^ok$/,
      'the address is full',
    );
    assert.equal(await tryLogin(gw.sshPort, { user: 'acme', key: acmeKey, from: '127.0.0.10' }), 'ok');
    await Promise.all(sessions.map((s) => s.closed));
    t.diagnostic(`idle enrollment sessions closed ${Date.now() - t0} ms after the last one opened`);
    assert.ok(Date.now() - t0 <= AUTH_TIMEOUT + 5_000);
    // the gateway frees a slot when its side of the socket closes, which may come just after ours
    await waitFor(async () => (await tryLogin(gw.sshPort, { user: 'acme', key: acmeKey, from })) === 'ok', {
      timeout: 15_000,
      what: 'slots given back',
    });
  });

  test('a wrong enrollment token is a failed login; a good enrollment never clears failures', async () => {
    // three wrong tokens from one address block it, even for the right key
    for (let i = 0; i < 3; i++) {
      const s = await openControlSession({
        port: gw.sshPort,
        user: 'tether-enroll',
        privateKey: anyKey(),
        from: '127.0.0.6',
      });
      s.send({ type: 'enroll', token: `guess-${i}` });
      await s.closed;
    }
    assert.match(
      await tryLogin(gw.sshPort, { user: 'acme', key: acmeKey, from: '127.0.0.6' }),
      /authentication methods failed/,
    );

    // two failures, then a successful enrollment, then one more failure: blocked
    const from = '127.0.0.7';
    const stranger = Buffer.from(anyKey());
    for (let i = 0; i < 2; i++) {
      assert.match(
        await tryLogin(gw.sshPort, { user: 'acme', key: stranger, from }),
        /authentication methods failed/,
      );
    }
    const token = (await gw.tether(['tenants', 'enroll', 'acme'])).stdout.trim();
    const s = await openControlSession({
      port: gw.sshPort,
      user: 'tether-enroll',
      privateKey: anyKey(),
      from,
    });
    s.send({ type: 'enroll', token });
    const m = await s.waitMessage((x) => x.type === 'enrolled' || x.type === 'error');
    assert.equal(m.type, 'enrolled', JSON.stringify(m));
    await s.closed;
    assert.match(
      await tryLogin(gw.sshPort, { user: 'acme', key: stranger, from }),
      /authentication methods failed/,
    );
    assert.match(
      await tryLogin(gw.sshPort, { user: 'acme', key: acmeKey, from }),
      /authentication methods failed/,
      'blocked: the enrollment did not reset the failures',
    );
    assert.equal(await tryLogin(gw.sshPort, { user: 'acme', key: acmeKey, from: '127.0.0.8' }), 'ok');
  });
});
