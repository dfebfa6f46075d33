/**
 * The SSH front door's connection boundary: a dependency that throws while a connection is
 * accepted or set up closes that connection only; the next client is served and the process lives.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import ssh2 from 'ssh2';
import { FakeClock } from '../../../test/helpers/core.js';
import { FailureThrottle } from '../../core/throttle.js';
import { silentLogger } from '../../log/index.js';
import { SshProxyServer } from './server.js';

/** Connects and tries a password; resolves with how the attempt ended. */
function attempt(port: number): Promise<string> {
  return new Promise((resolve) => {
    const c = new ssh2.Client();
    let settled = false;
    const done = (what: string) => {
      if (settled) return;
      settled = true;
      c.end();
      resolve(what);
    };
    c.on('ready', () => done('ready'));
    c.on('error', (e: Error & { level?: string }) =>
      done(e.level === 'client-authentication' ? 'auth-refused' : `error: ${e.message}`),
    );
    c.on('close', () => done('closed'));
    c.connect({ host: '127.0.0.1', port, username: 'norealm:target', password: 'x', readyTimeout: 20_000 });
  });
}

describe('ssh-proxy connection boundary', () => {
  it('a throw while accepting or setting up a client closes that client; the next one is served', async () => {
    const fake = new FakeClock();
    let call = 0;
    const throwOn = new Set([1, 3]);
    const clock = {
      now: () => fake.now(),
      clearTimeout: (h: unknown) => fake.clearTimeout(h),
      setTimeout: (fn: () => void, ms: number) => {
        call++;
        if (throwOn.has(call)) throw new Error(`injected failure ${call}`);
        return fake.setTimeout(fn, ms);
      },
    };
    const settings = {
      handshakeTimeout: 60_000,
      idleTimeout: 60_000,
      connectTimeout: 10_000,
      keepaliveInterval: 0,
      keepaliveCountMax: 3,
      maxAuthTries: 3,
      ident: 'tether-test',
    };
    const hostKey = ssh2.utils.generateKeyPairSync('ed25519').private;
    const server = new SshProxyServer(
      {
        hostKey,
        ident: 'tether-test',
        keepaliveInterval: 0,
        keepaliveCountMax: 3,
        maxUnauthenticated: 10,
        maxUnauthenticatedPerSource: 10,
      },
      {
        realms: new Map(),
        throttle: new FailureThrottle(fake, { maxFailures: 100, windowMs: 60_000, blockMs: 60_000 }),
        clock: clock as unknown as FakeClock,
        log: silentLogger(),
        settings,
      },
    );
    const { port } = await server.listen('127.0.0.1', 0);
    try {
      // 1st setTimeout (accept) throws: the socket is closed before any SSH.
      assert.notEqual(await attempt(port), 'ready');
      // 2nd (accept) works, 3rd (the client's own login timer) throws: that client is dropped.
      assert.notEqual(await attempt(port), 'ready');
      // The next client is served: it reaches the login and is told what is wrong with its user name.
      assert.match(await attempt(port), /invalid username: "norealm:target" has no "\/<index>"/);
    } finally {
      await server.close();
    }
  });
});
