import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import ssh2 from 'ssh2';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { PasswordClient, proxyPort, startSshd, type TestSshd } from '../helpers/sshd.js';
import { freePort, tempDir, waitFor } from '../helpers/util.js';

// What a user sees when the SSH front door refuses: every bad input gets its reason on stderr
// (OpenSSH prints the SSH_MSG_DISCONNECT text), and a malformed username never gets a password prompt.

const PASSWORD = 'static-shared-Cred-2';
const TARGET_PASSWORD = 'target-only-pw';

function sha256Of(publicKeyLine: string): string {
  const parsed = ssh2.utils.parseKey(publicKeyLine);
  if (parsed instanceof Error || Array.isArray(parsed)) throw new Error('bad key');
  return `SHA256:${createHash('sha256').update(parsed.getPublicSSH()).digest('base64').replace(/=+$/, '')}`;
}

/** A small SSH server (ssh2) that accepts only a password: the target of a password route. */
async function startPasswordTarget(): Promise<{
  port: number;
  fingerprint: string;
  logins: string[];
  close(): Promise<void>;
}> {
  const kp = ssh2.utils.generateKeyPairSync('ed25519');
  const logins: string[] = [];
  const server = new ssh2.Server({ hostKeys: [kp.private] }, (client) => {
    client.on('error', () => {});
    client.on('authentication', (ctx) => {
      if (ctx.method === 'password' && ctx.username === 'svc' && ctx.password === TARGET_PASSWORD) {
        logins.push(ctx.username);
        return ctx.accept();
      }
      ctx.reject(['password']);
    });
    client.on('session', (accept) => {
      accept().on('exec', (acc, _rej, info) => {
        const ch = acc();
        ch.write(`password target ran: ${info.command}\n`);
        ch.exit(0);
        ch.end();
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as net.AddressInfo;
  return {
    port,
    fingerprint: sha256Of(kp.public),
    logins,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const disconnect = (code: number, text: RegExp) =>
  new RegExp(`Received disconnect from 127\\.0\\.0\\.1 port \\d+:${code}: tether: ${text.source}`);

describe('ssh proxy: refusals a user can read', () => {
  let sshd: TestSshd;
  let gw: TestGateway;
  let client: PasswordClient;
  let pwTarget: Awaited<ReturnType<typeof startPasswordTarget>>;

  before(async () => {
    [sshd, pwTarget] = await Promise.all([startSshd(), startPasswordTarget()]);
    const closedPort = await freePort();
    const login = { user: sshd.user, private_key_file: sshd.clientKeyFile };
    const at = { host: '127.0.0.1', port: sshd.port };
    const stranger = ssh2.utils.generateKeyPairSync('ed25519');
    gw = await startGateway({
      config: {
        ssh_proxy: {
          listen: '127.0.0.1:0',
          login_throttle: { max_failures: 1000 },
          realms: {
            static: {
              type: 'static',
              credential: PASSWORD,
              targets: {
                'web-1': [{ ...at, ...login, host_fingerprint: sshd.fingerprint }],
                down: [{ host: '127.0.0.1', port: closedPort, ...login, host_fingerprint: sshd.fingerprint }],
                'wrong-key': [{ ...at, ...login, host_fingerprint: sha256Of(stranger.public) }],
                'no-fp': [{ ...at, ...login }],
                insecure: [{ ...at, ...login, insecure_skip_host_key_check: true }],
                'bad-login': [
                  {
                    ...at,
                    user: sshd.user,
                    private_key: stranger.private,
                    host_fingerprint: sshd.fingerprint,
                  },
                ],
                pw: [
                  {
                    host: '127.0.0.1',
                    port: pwTarget.port,
                    user: 'svc',
                    password: TARGET_PASSWORD,
                    host_fingerprint: pwTarget.fingerprint,
                  },
                ],
              },
            },
            other: {
              type: 'static',
              credential: 'other-cred',
              targets: { x: [{ ...at, ...login, host_fingerprint: sshd.fingerprint }] },
            },
          },
        },
      },
    });
    client = new PasswordClient(await proxyPort(gw));
  });

  after(async () => {
    await gw?.stop();
    await sshd?.stop();
    await pwTarget?.close();
  });

  test('malformed usernames are refused with their reason, before any password is asked', async () => {
    const cases: Array<[string, RegExp]> = [
      [
        'web-1/0',
        /invalid username: "web-1\/0" has no ":" between realm and target: use <realm>:<target>\/<index>/,
      ],
      ['static:web-1/-1', /invalid username: index "-1" is negative/],
      ['static:web-1/10000', /invalid username: index "10000" is out of range: use 0 to 9999/],
      [
        'static:web-1/123456789012345678901234567890',
        /invalid username: index "123456789012345678901234567890" is out of range/,
      ],
      ['static:web-1/abc', /invalid username: index "abc" is not a whole number from 0 to 9999/],
      ['static:web-1/0/1', /invalid username: "static:web-1\/0\/1" has more than one "\/"/],
      ['static:web-1', /invalid username: "static:web-1" has no "\/<index>" after the target/],
      ['static:wéb-1/0', /invalid username: username has non-ASCII, space or control characters/],
    ];
    const before = client.prompts();
    for (const [user, reason] of cases) {
      const r = await client.ssh(user, PASSWORD, ['127.0.0.1', 'true']);
      assert.equal(r.code, 255, user);
      assert.match(r.stderr, disconnect(15, reason), user);
    }
    // scp and sftp run ssh underneath: their users see the same reason.
    const scp = await client.scp('static:web-1/x', PASSWORD, [client.askpass, '127.0.0.1:/tmp/never']);
    assert.equal(scp.code, 255);
    assert.match(scp.stderr, disconnect(15, /invalid username: index "x" is not a whole number/));
    const batch = join(tempDir('tether-sftp-batch-'), 'batch.txt');
    writeFileSync(batch, 'ls\n');
    const sftp = await client.sftp('web-1/0', PASSWORD, batch);
    assert.equal(sftp.code, 255);
    assert.match(
      sftp.stderr,
      disconnect(15, /invalid username: "web-1\/0" has no ":" between realm and target/),
    );
    assert.equal(client.prompts(), before, 'no password prompt for a malformed username');
  });

  test('an unknown realm is named, with the realms on offer', async () => {
    const before = client.prompts();
    const r = await client.ssh('nope:web-1/0', PASSWORD, ['127.0.0.1', 'true']);
    assert.equal(r.code, 255);
    assert.match(r.stderr, disconnect(15, /unknown realm "nope" \(this gateway offers: other, static\)/));
    assert.equal(client.prompts(), before);
  });

  test('a wrong password: the reason shows on the next prompt, and the connection ends after max_auth_tries', async () => {
    const before = client.prompts();
    const r = await client.ssh('static:web-1/0', 'not-the-password', ['127.0.0.1', 'true']);
    assert.equal(r.code, 255);
    assert.match(r.stderr, /tether: wrong password for realm static; try again/);
    assert.match(r.stderr, disconnect(14, /wrong password for realm static \(3 failed attempts; closing\)/));
    assert.equal(client.prompts() - before, 3);
    await gw.output.wait(/"event":"ssh_proxy.login.failed".*"code":"WRONG_PASSWORD"/);
  });

  test('refused and allowed logins show in the metrics', async () => {
    const ok = await client.ssh('static:web-1/0', PASSWORD, ['127.0.0.1', 'true']);
    assert.equal(ok.code, 0, ok.stderr);
    const text = await waitFor(
      async () => {
        const res = await fetch(`${gw.adminUrl}/metrics`, {
          headers: { authorization: `Bearer ${gw.adminToken}` },
        });
        const body = await res.text();
        return /tether_frontdoor_requests_total\{front_door="ssh_proxy",outcome="allowed"\} [1-9]/.test(body)
          ? body
          : undefined;
      },
      { what: 'the ssh_proxy metrics' },
    );
    assert.match(text, /tether_frontdoor_requests_total\{front_door="ssh_proxy",outcome="denied"\} [1-9]/);
    assert.match(text, /tether_auth_failures_total\{reason="ssh_proxy"\} [1-9]/);
  });

  test('plain password auth (not keyboard-interactive) works, and a wrong one is refused', async () => {
    const ok = await client.ssh('static:web-1/0', PASSWORD, [
      '-o',
      'PreferredAuthentications=password',
      '127.0.0.1',
      'echo pw-method',
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout.trim(), 'pw-method');
    const bad = await client.ssh('static:web-1/0', 'wrong', [
      '-o',
      'PreferredAuthentications=password',
      '127.0.0.1',
      'true',
    ]);
    assert.equal(bad.code, 255);
    assert.match(bad.stderr, /Permission denied, please try again/);
    assert.match(
      bad.stderr,
      disconnect(14, /wrong password for realm static \(3 failed attempts; closing\)/),
    );
  });

  test('an unknown target or index, after the right password', async () => {
    const a = await client.ssh('static:nope/0', PASSWORD, ['127.0.0.1', 'true']);
    assert.equal(a.code, 255);
    assert.match(a.stderr, disconnect(14, /realm static has no target "nope"/));
    const b = await client.ssh('static:web-1/5', PASSWORD, ['127.0.0.1', 'true']);
    assert.match(b.stderr, disconnect(14, /target "web-1" of realm static has only index 0, not 5/));
  });

  test('target down', async () => {
    const r = await client.ssh('static:down/0', PASSWORD, ['127.0.0.1', 'true']);
    assert.equal(r.code, 255);
    assert.match(r.stderr, disconnect(11, /cannot reach target static:down\/0: connection refused/));
    await gw.output.wait(/"event":"ssh_proxy.target.failed".*"code":"TARGET_UNREACHABLE"/);
  });

  test('host key mismatch: the user is told why, and the target gets no login at all', async () => {
    const mark = sshd.output.lines.length;
    const r = await client.ssh('static:wrong-key/0', PASSWORD, ['127.0.0.1', 'true']);
    assert.equal(r.code, 255);
    assert.match(
      r.stderr,
      disconnect(
        11,
        new RegExp(
          `the host key of target static:wrong-key/0 does not match its configured fingerprint \\(it presented ${sshd.fingerprint.replace(/[+/]/g, '\\$&')}\\); the gateway sent it nothing`,
        ),
      ),
    );
    await sshd.output.wait(/Connection from 127\.0\.0\.1/, 5_000, mark);
    const seen = sshd.output.lines.slice(mark).join('\n');
    assert.doesNotMatch(seen, /publickey|Accepted|Failed|Postponed|Invalid user|for root|userauth/i, seen);
  });

  test('no host_fingerprint configured: refused without connecting', async () => {
    const mark = sshd.output.lines.length;
    const r = await client.ssh('static:no-fp/0', PASSWORD, ['127.0.0.1', 'true']);
    assert.equal(r.code, 255);
    assert.match(
      r.stderr,
      disconnect(
        11,
        /target static:no-fp\/0 has no host key fingerprint configured, so the gateway refuses to connect/,
      ),
    );
    assert.doesNotMatch(sshd.output.lines.slice(mark).join('\n'), /Connection from/);
  });

  test('insecure_skip_host_key_check: true connects without a fingerprint', async () => {
    const r = await client.ssh('static:insecure/0', PASSWORD, ['127.0.0.1', 'echo insecure-ok']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'insecure-ok');
  });

  test('the target refuses the configured login', async () => {
    const r = await client.ssh('static:bad-login/0', PASSWORD, ['127.0.0.1', 'true']);
    assert.equal(r.code, 255);
    assert.match(
      r.stderr,
      disconnect(11, new RegExp(`the gateway could not log in to target static:bad-login/0 as ${sshd.user}`)),
    );
  });

  test('a password route logs in to the target with its password', async () => {
    const r = await client.ssh('static:pw/0', PASSWORD, ['127.0.0.1', 'whoami']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'password target ran: whoami');
    assert.deepEqual(pwTarget.logins.slice(-1), ['svc']);
  });

  test('ssh -R and other subsystems are refused (allowlist)', async () => {
    const fwd = await client.ssh('static:web-1/0', PASSWORD, [
      '-N',
      '-o',
      'ExitOnForwardFailure=yes',
      '-R',
      '0:127.0.0.1:9',
      '127.0.0.1',
    ]);
    assert.equal(fwd.code, 255);
    assert.match(fwd.stderr, /remote port forwarding failed/);
    await gw.output.wait(/"event":"ssh_proxy.request.refused".*"request":"tcpip-forward"/);
    const sub = await client.ssh('static:web-1/0', PASSWORD, ['-s', '127.0.0.1', 'not-sftp']);
    assert.equal(sub.code, 255);
    assert.match(sub.stderr, /subsystem request failed/);
  });
});

describe('ssh proxy: throttle and timeouts', () => {
  let sshd: TestSshd;
  let gw: TestGateway;
  let client: PasswordClient;

  before(async () => {
    sshd = await startSshd();
    gw = await startGateway({
      config: {
        ssh_proxy: {
          listen: '127.0.0.1:0',
          max_auth_tries: 1,
          handshake_timeout: '2s',
          // Long enough that a busy session's output gaps (1 s) and its first output after the
          // login never reach it on a loaded machine; an idle one surely does.
          idle_timeout: '5s',
          login_throttle: { max_failures: 2, window: '15m', block_for: '15m' },
          realms: {
            static: {
              type: 'static',
              credential: PASSWORD,
              targets: {
                'web-1': [
                  {
                    host: '127.0.0.1',
                    port: sshd.port,
                    user: sshd.user,
                    private_key_file: sshd.clientKeyFile,
                    host_fingerprint: sshd.fingerprint,
                  },
                ],
              },
            },
          },
        },
      },
    });
    client = new PasswordClient(await proxyPort(gw));
  });

  after(async () => {
    await gw?.stop();
    await sshd?.stop();
  });

  const from = (addr: string) => ['-o', `BindAddress=${addr}`];

  test('a login that takes longer than handshake_timeout is ended with the reason', async () => {
    const r = await client.ssh('static:web-1/0', PASSWORD, [...from('127.0.0.3'), '127.0.0.1', 'true'], {
      env: { TETHER_TEST_ASKPASS_DELAY: '4' },
    });
    assert.equal(r.code, 255);
    assert.match(r.stderr, disconnect(11, /login not completed within 2 s/));
  });

  test('a client that never speaks SSH is closed after handshake_timeout', async () => {
    const port = client.port;
    const started = Date.now();
    await new Promise<void>((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.4' });
      s.on('error', reject);
      s.on('data', () => {});
      s.on('close', () => resolve());
    });
    const took = Date.now() - started;
    assert.ok(took >= 1_500 && took < 10_000, `closed after ${took} ms`);
  });

  test('an idle session is closed after idle_timeout; a busy one is not', async () => {
    const busy = await client.ssh('static:web-1/0', PASSWORD, [
      ...from('127.0.0.5'),
      '127.0.0.1',
      'for i in 1 2 3 4 5 6 7 8; do echo $i; sleep 1; done',
    ]);
    assert.equal(busy.code, 0, busy.stderr);
    assert.equal(busy.stdout, '1\n2\n3\n4\n5\n6\n7\n8\n');
    const idle = await client.ssh('static:web-1/0', PASSWORD, [
      ...from('127.0.0.5'),
      '127.0.0.1',
      'sleep 20; echo never',
    ]);
    assert.equal(idle.code, 255);
    assert.match(idle.stderr, disconnect(11, /no traffic for 5 s; connection closed/));
    assert.equal(idle.stdout, '');
  });
});

describe('ssh proxy: login throttle', () => {
  // Its own gateway, without the short handshake and idle timeouts above: on a loaded machine a
  // good login could reach those, and this test is about the throttle.
  let sshd: TestSshd;
  let gw: TestGateway;
  let client: PasswordClient;

  before(async () => {
    sshd = await startSshd();
    gw = await startGateway({
      config: {
        ssh_proxy: {
          listen: '127.0.0.1:0',
          max_auth_tries: 1,
          login_throttle: { max_failures: 2, window: '15m', block_for: '15m' },
          realms: {
            static: {
              type: 'static',
              credential: PASSWORD,
              targets: {
                'web-1': [
                  {
                    host: '127.0.0.1',
                    port: sshd.port,
                    user: sshd.user,
                    private_key_file: sshd.clientKeyFile,
                    host_fingerprint: sshd.fingerprint,
                  },
                ],
              },
            },
          },
        },
      },
    });
    client = new PasswordClient(await proxyPort(gw));
  });

  after(async () => {
    await gw?.stop();
    await sshd?.stop();
  });

  const from = (addr: string) => ['-o', `BindAddress=${addr}`];

  test('failed logins are throttled per source address', async () => {
    const a = await client.ssh('static:web-1/0', 'wrong-1', [...from('127.0.0.1'), '127.0.0.1', 'true']);
    assert.match(a.stderr, disconnect(14, /wrong password for realm static \(1 failed attempt; closing\)/));
    const b = await client.ssh('static:web-1/0', 'wrong-2', [...from('127.0.0.1'), '127.0.0.1', 'true']);
    assert.match(
      b.stderr,
      disconnect(
        1,
        /wrong password for realm static; too many failed logins from 127\.0\.0\.1, try again in 15 minutes/,
      ),
    );
    const prompts = client.prompts();
    const c = await client.ssh('static:web-1/0', PASSWORD, [...from('127.0.0.1'), '127.0.0.1', 'echo never']);
    assert.equal(c.code, 255);
    assert.match(
      c.stderr,
      disconnect(1, /too many failed logins from 127\.0\.0\.1; try again in 15 minutes/),
    );
    assert.equal(client.prompts(), prompts, 'a blocked source is not even asked for a password');
    const other = await client.ssh('static:web-1/0', PASSWORD, [
      ...from('127.0.0.2'),
      '127.0.0.1',
      'echo other-source-ok',
    ]);
    assert.equal(other.code, 0, other.stderr);
    assert.equal(other.stdout.trim(), 'other-source-ok');
  });
});
