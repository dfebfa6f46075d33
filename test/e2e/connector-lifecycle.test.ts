// test-timeout: 300000 (three suites of about 30 real CLI runs and connectors; about 45 s alone, over 2 min at a load average of 15 on 2 cores)
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { processAlive } from '../../src/connector/daemon.js';
import { generateKeyPair, parsePublicKey } from '../../src/core/ssh-keys.js';
import { startConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startHttpServer, type TestServer } from '../helpers/servers.js';
import { BIN, freePort, run, tempDir, waitFor } from '../helpers/util.js';

function tether(args: string[], env: NodeJS.ProcessEnv = {}) {
  const e = { ...process.env, ...env };
  delete e.TETHER_STATE_DIR;
  delete e.TETHER_CONNECT_CONFIG;
  return run(process.execPath, [BIN, ...args], { env: e });
}

async function keyCount(gw: TestGateway, tenant: string): Promise<number> {
  const r = await gw.tether(['tenants', 'list', tenant, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { keys: unknown[] }).keys.length;
}

describe('connector lifecycle: init, register, start, status, stop, ping, unregister', () => {
  let gw: TestGateway;
  let http: TestServer;
  let dir: string;
  let cfg: string;
  before(async () => {
    [gw, http] = await Promise.all([startGateway(), startHttpServer('life')]);
    dir = tempDir('tether-life-');
    cfg = join(dir, 'connect.yaml');
    await gw.addTenant('acme');
  });
  after(async () => {
    await tether(['connector', 'stop', '-c', cfg]);
    await gw?.stop();
    await http?.close();
  });

  test('init writes a commented connect.yaml and a 0600 ed25519 key; refuses to overwrite without -f', async () => {
    const r = await tether(['connector', 'init', '-c', cfg, '--gateway', `127.0.0.1:${gw.sshPort}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /key fingerprint: SHA256:/);
    const text = readFileSync(cfg, 'utf8');
    assert.match(text, /^# Tether connector configuration/);
    assert.match(text, new RegExp(`gateway: "127\\.0\\.0\\.1:${gw.sshPort}"`));
    assert.equal(statSync(join(dir, 'connect_key')).mode & 0o777, 0o600);
    assert.match(readFileSync(join(dir, 'connect_key.pub'), 'utf8'), /^ssh-ed25519 AAAA/);
    assert.doesNotMatch(r.stdout + r.stderr, /PRIVATE KEY/);

    const again = await tether(['connector', 'init', '-c', cfg]);
    assert.equal(again.code, 4);
    assert.match(
      again.stderr,
      /connect\.yaml already exists \(use -f to overwrite it; a new key must be enrolled again\)/,
    );
    // the template as written is a valid config
    const shown = await tether(['connector', 'config', '-c', cfg]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /ssh_key_fingerprint: SHA256:/);
  });

  test('register with a one-time token fills in the tenant; the same token fails the second time', async () => {
    const tok = await gw.tether(['tenants', 'enroll', 'acme']);
    assert.equal(tok.code, 0, tok.stderr);
    const token = tok.stdout.trim();
    const r = await tether(['connector', 'register', '--token', token, '-c', cfg]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /enrolled key SHA256:\S+ with tenant acme/);
    assert.match(r.stdout, /trusting the gateway's host key on first use: SHA256:/);
    assert.match(readFileSync(cfg, 'utf8'), /^tenant: acme$/m);
    assert.match(
      readFileSync(join(dir, '.tether-connector', 'known_hosts'), 'utf8'),
      new RegExp(`^\\[127\\.0\\.0\\.1\\]:${gw.sshPort} ssh-ed25519 `),
    );
    assert.equal(await keyCount(gw, 'acme'), 2);

    const twice = await tether(['connector', 'register', '--token', token, '-c', cfg]);
    assert.equal(twice.code, 6);
    assert.equal(
      twice.stderr,
      'tether: enrollment refused: enrollment token is unknown, already used or expired\n',
    );
  });

  test('ping without a running connector opens its own session', async () => {
    const r = await tether(['connector', 'ping', '-c', cfg]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^pong from 127\.0\.0\.1:\d+ in \d+\.\d ms$/m);
  });

  test('start runs it in the background; status shows it; stop ends it cleanly', async () => {
    const text = readFileSync(cfg, 'utf8').replace(
      /^repositories:\n {2}example_group:\n/m,
      `repositories:\n  example_group:\n    web: "http://127.0.0.1:${http.port}"\n`,
    );
    writeFileSync(cfg, text);
    const r = await tether(['connector', 'start', '-c', cfg]);
    assert.equal(r.code, 0, r.stderr);
    const pid = Number(/connector started \(pid (\d+)\)/.exec(r.stdout)?.[1]);
    assert.ok(pid > 0, r.stdout);
    assert.equal(Number(readFileSync(join(dir, '.tether-connector', 'connector.pid'), 'utf8')), pid);

    const st = await waitFor(async () => {
      const s = await tether(['connector', 'status', '--json', '-c', cfg]);
      const j = JSON.parse(s.stdout) as {
        connected: boolean;
        repositories: Array<{ state: string; leasePort: number }>;
      };
      return j.connected && j.repositories[0]?.state === 'active' ? j : null;
    });
    const res = await run('curl', ['-sS', '-m', '5', `http://127.0.0.1:${st.repositories[0]!.leasePort}/bg`]);
    assert.equal(res.stdout, 'hello from life /bg\n');

    const twice = await tether(['connector', 'start', '-c', cfg]);
    assert.equal(twice.code, 4);
    assert.match(twice.stderr, new RegExp(`the connector is already running \\(pid ${pid}\\)`));

    const stop = await tether(['connector', 'stop', '-c', cfg]);
    assert.equal(stop.code, 0, stop.stderr);
    assert.equal(stop.stdout, `connector stopped (pid ${pid})\n`);
    assert.equal(processAlive(pid), false);
    assert.equal(existsSync(join(dir, '.tether-connector', 'connector.pid')), false);
    assert.equal(existsSync(join(dir, '.tether-connector', 'connector.sock')), false);

    const status = await tether(['connector', 'status', '-c', cfg]);
    assert.equal(status.code, 3);
    assert.match(status.stderr, /the connector is not running/);
    const stopAgain = await tether(['connector', 'stop', '-c', cfg]);
    assert.equal(stopAgain.code, 0);
    assert.equal(stopAgain.stdout, 'the connector was not running\n');
  });

  test('unregister removes the key from the tenant and deletes it locally', async () => {
    assert.equal(await keyCount(gw, 'acme'), 2);
    const r = await tether(['connector', 'unregister', '-c', cfg]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^removed key SHA256:\S+ from tenant acme at 127\.0\.0\.1:\d+$/m);
    assert.match(r.stdout, /deleted .*connect_key$/m);
    assert.equal(existsSync(join(dir, 'connect_key')), false);
    assert.equal(existsSync(join(dir, 'connect_key.pub')), false);
    assert.equal(await keyCount(gw, 'acme'), 1);
    const ping = await tether(['connector', 'ping', '-c', cfg]);
    assert.equal(ping.code, 2);
    assert.match(ping.stderr, /ssh_key .*connect_key: file not found/);
  });
});

describe('connector: the gateway host key', () => {
  let gw: TestGateway;
  let keyFile: string;
  before(async () => {
    gw = await startGateway();
    keyFile = await gw.addTenant('acme');
  });
  after(async () => {
    await gw?.stop();
  });

  test('a pinned fingerprint that does not match: run refuses, shows both fingerprints, exits non-zero', async () => {
    const wrong = parsePublicKey(generateKeyPair().publicKey).fingerprint;
    const c = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile,
      config: { gateway_fingerprint: wrong },
      waitActive: false,
    });
    const code = await c.exited();
    assert.equal(code, 6);
    assert.ok(
      c.stderr.text().includes(`expected ${wrong} (gateway_fingerprint in ${c.configFile})`),
      c.stderr.text(),
    );
    assert.ok(c.stderr.text().includes(`the gateway presented ${gw.hostFingerprint}`), c.stderr.text());
  });

  test('the matching pinned fingerprint connects', async () => {
    const c = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile,
      config: { gateway_fingerprint: gw.hostFingerprint },
    });
    assert.equal((await c.status()).fingerprint, gw.hostFingerprint);
    await c.stop();
    assert.equal(
      existsSync(join(c.stateDir, 'known_hosts')),
      false,
      'a pinned key is not written to known_hosts',
    );
  });

  test('trust on first use, then a different key in known_hosts is refused', async () => {
    const dir = tempDir('tether-tofu-');
    const c = await startConnector({ dir, gateway: gw.sshPort, tenant: 'acme', keyFile });
    await c.stop();
    await c.output.wait(/trusting the gateway's host key on first use/);
    const kh = join(c.stateDir, 'known_hosts');
    assert.match(readFileSync(kh, 'utf8'), new RegExp(`^\\[127\\.0\\.0\\.1\\]:${gw.sshPort} ssh-ed25519 `));

    const other = parsePublicKey(generateKeyPair().publicKey);
    writeFileSync(kh, `[127.0.0.1]:${gw.sshPort} ${other.line}\n`);
    const c2 = await startConnector({ dir, gateway: gw.sshPort, tenant: 'acme', keyFile, waitActive: false });
    assert.equal(await c2.exited(), 6);
    assert.ok(c2.stderr.text().includes(`expected ${other.fingerprint} (${kh} line 1)`), c2.stderr.text());
    assert.ok(c2.stderr.text().includes(`presented ${gw.hostFingerprint}`));
  });
});

describe('connector: gateway unreachable', () => {
  test('retries with backoff, status says why, no crash; ping exits non-zero', async () => {
    const dir = tempDir('tether-unreach-');
    const port = await freePort();
    const { privateKey } = generateKeyPair();
    const keyFile = join(dir, 'key');
    writeFileSync(keyFile, privateKey, { mode: 0o600 });
    const c = await startConnector({
      dir,
      gateway: port,
      tenant: 'acme',
      keyFile,
      config: { reconnect: { min_delay: '100ms', max_delay: '400ms' } },
      waitActive: false,
    });
    try {
      // between two attempts (a read during the next attempt says 'connecting', as it should)
      const st = await waitFor(
        async () => {
          const s = await c.status();
          return s.attempts >= 3 && s.state === 'disconnected' ? s : null;
        },
        { what: "three attempts, then a 'disconnected' status between two" },
      );
      assert.equal(st.connected, false);
      assert.ok(st.nextRetryAt, 'between attempts the status says when the next one is');
      assert.equal(
        st.lastError,
        `cannot reach the gateway at 127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}`,
      );
      const text = await c.cli(['status']);
      assert.equal(text.code, 0);
      // the CLI reads the status again: by then the next attempt may be under way
      assert.match(
        text.stdout,
        new RegExp(`^NOT connected to 127\\.0\\.0\\.1:${port} \\((disconnected|connecting)`, 'm'),
      );
      assert.match(text.stdout, /last error: cannot reach the gateway at .*ECONNREFUSED/);
      if (/\(disconnected/.test(text.stdout)) assert.match(text.stdout, /next attempt: /);
      const ping = await c.cli(['ping']);
      assert.equal(ping.code, 5);
      assert.match(ping.stderr, /not connected to the gateway 127\.0\.0\.1:\d+: cannot reach the gateway/);
      assert.equal(c.process.exitCode, null, 'still running');
    } finally {
      await c.stop();
    }
  });
});

describe('connector: a key the gateway does not know', () => {
  test('status says the gateway refused the key; the connector keeps retrying', async () => {
    const gw = await startGateway();
    try {
      await gw.addTenant('acme');
      const dir = tempDir('tether-auth-');
      const keyFile = join(dir, 'key');
      writeFileSync(keyFile, generateKeyPair().privateKey, { mode: 0o600 });
      const c = await startConnector({
        dir,
        gateway: gw.sshPort,
        tenant: 'acme',
        keyFile,
        config: { reconnect: { min_delay: '100ms', max_delay: '400ms' } },
        waitActive: false,
      });
      try {
        const st = await waitFor(async () => {
          const s = await c.status();
          return s.lastError && s.attempts >= 2 ? s : null;
        });
        assert.match(
          st.lastError!,
          /^the gateway at 127\.0\.0\.1:\d+ refused the key SHA256:\S+ for tenant "acme"/,
        );
      } finally {
        await c.stop();
      }
    } finally {
      await gw.stop();
    }
  });
});
