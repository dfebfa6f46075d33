import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startEchoServer, startHttpServer, type TestServer, tcpExchange } from '../helpers/servers.js';
import { PasswordClient, proxyPort, startSshd, type TestSshd } from '../helpers/sshd.js';
import { freePort, stopProcess, tempDir, waitFor } from '../helpers/util.js';

// The `tenant` realm: `tenant:<repo>.<group>.<tenant>/0` with the group key as password reaches an
// `ssh` repository's sshd through a real connector's tunnel.

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const disconnect = (code: number, text: RegExp) =>
  new RegExp(`Received disconnect from 127\\.0\\.0\\.1 port \\d+:${code}: tether: ${text.source}`);

describe('ssh proxy: tenant realm through a connector', () => {
  let sshd: TestSshd;
  let web: TestServer & { requests: number };
  let echo: TestServer;
  let gw: TestGateway;
  let connector: TestConnector;
  let client: PasswordClient;
  let groupKey: string;
  let dir: string;

  before(async () => {
    dir = tempDir('tether-sshp-tenant-');
    [sshd, web, echo] = await Promise.all([startSshd(), startHttpServer('web'), startEchoServer()]);
    gw = await startGateway({
      config: {
        ssh_proxy: {
          listen: '127.0.0.1:0',
          login_throttle: { max_failures: 1000 },
          realms: {
            tenant: {
              type: 'tenant',
              user: sshd.user,
              private_key_file: sshd.clientKeyFile,
              targets: {
                'box.grp.acme': { host_fingerprint: sshd.fingerprint, allow_port_forwarding: true },
              },
            },
          },
        },
      },
    });
    const keyFile = await gw.addTenant('acme');
    connector = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile,
      repositories: { grp: { box: `ssh://127.0.0.1:${sshd.port}`, web: `http://127.0.0.1:${web.port}` } },
    });
    groupKey = await gw.groupKey('acme', 'grp');
    client = new PasswordClient(await proxyPort(gw));
  });

  after(async () => {
    await connector?.stop();
    await gw?.stop();
    await sshd?.stop();
    await web?.close();
    await echo?.close();
  });

  test('ssh runs a command on the repository’s sshd, through the tunnel', async () => {
    const r = await client.ssh('tenant:box.grp.acme/0', groupKey, [
      '127.0.0.1',
      'echo through-the-tunnel; exit 5',
    ]);
    assert.equal(r.code, 5, r.stderr);
    assert.equal(r.stdout.trim(), 'through-the-tunnel');
    await gw.output.wait(/"event":"ssh_proxy.target.connected".*"address":"tunnel acme\/grp\/box"/);
  });

  test('scp (legacy mode) and ssh -L through the tunnel', async (t) => {
    const data = randomBytes(400_000);
    const local = join(dir, 'up.bin');
    writeFileSync(local, data);
    const remote = join(sshd.dir, 'tenant-up.bin');
    const up = await client.scp('tenant:box.grp.acme/0', groupKey, ['-O', local, `127.0.0.1:${remote}`]);
    assert.equal(up.code, 0, up.stderr);
    assert.equal(sha(readFileSync(remote)), sha(data));

    const port = await freePort();
    const p = client.spawn('tenant:box.grp.acme/0', groupKey, [
      '-N',
      '-o',
      'ExitOnForwardFailure=yes',
      '-L',
      `127.0.0.1:${port}:127.0.0.1:${echo.port}`,
      '127.0.0.1',
    ]);
    t.after(() => stopProcess(p));
    const got = await waitFor(() => tcpExchange(port, 'hello -L', 8), {
      timeout: 20_000,
      what: 'the -L forward',
    });
    assert.equal(got.toString(), 'hello -L');
  });

  test('a wrong group key is refused with the reason', async () => {
    const r = await client.ssh('tenant:box.grp.acme/0', 'not-the-group-key', ['127.0.0.1', 'true']);
    assert.equal(r.code, 255);
    assert.match(r.stderr, /tether: wrong group key for group grp of tenant acme; try again/);
    assert.match(
      r.stderr,
      disconnect(14, /wrong group key for group grp of tenant acme \(3 failed attempts; closing\)/),
    );
  });

  test('a repository that is not ssh, and one that is offline', async () => {
    const http = await client.ssh('tenant:web.grp.acme/0', groupKey, ['127.0.0.1', 'true']);
    assert.equal(http.code, 255);
    assert.match(http.stderr, disconnect(14, /repository web\.grp\.acme is a http repository, not ssh/));
    assert.equal(web.requests, 0);
    const gone = await client.ssh('tenant:gone.grp.acme/0', groupKey, ['127.0.0.1', 'true']);
    assert.equal(gone.code, 255);
    assert.match(
      gone.stderr,
      disconnect(14, /repository gone\.grp\.acme is offline \(its connector is not connected\)/),
    );
  });

  test('a caller outside the tenant allow_from is told why; the change holds for the next login', async () => {
    const set = await gw.api('PATCH', '/v1/tenants/acme', { allow_from: ['::1/128'] });
    assert.equal(set.status, 200);
    const r = await client.ssh('tenant:box.grp.acme/0', groupKey, ['127.0.0.1', 'true']);
    assert.equal(r.code, 255);
    assert.match(
      r.stderr,
      /tether: source address 127\.0\.0\.1 is not in the allow_from list of tenant acme/,
    );
    await gw.output.wait(
      /"event":"connection\.refused".*"front_door":"ssh_proxy".*allow_from list of tenant acme/,
    );
    const off = await gw.api('PATCH', '/v1/tenants/acme', { allow_from: null });
    assert.equal(off.status, 200);
    const ok = await client.ssh('tenant:box.grp.acme/0', groupKey, ['127.0.0.1', 'echo again']);
    assert.equal(ok.code, 0, ok.stderr);
  });

  test('a target that is not <repo>.<group>.<tenant>, or an index other than 0, is refused before a key is asked', async () => {
    const prompts = client.prompts();
    const a = await client.ssh('tenant:box.grp/0', groupKey, ['127.0.0.1', 'true']);
    assert.match(
      a.stderr,
      disconnect(15, /invalid username: target "box\.grp" is not <repo>\.<group>\.<tenant>/),
    );
    const b = await client.ssh('tenant:box.grp.acme/1', groupKey, ['127.0.0.1', 'true']);
    assert.match(b.stderr, disconnect(15, /invalid username: a repository has one address: use index 0/));
    assert.equal(client.prompts(), prompts);
  });

  test('when the connector goes away, the repository is offline', async () => {
    await connector.stop();
    await waitFor(
      async () => {
        const t = await gw.api('GET', '/v1/tenants/acme');
        const forwards =
          (t.json as { tenant?: { forwards?: Array<{ state: string }> } }).tenant?.forwards ?? [];
        return forwards.every((f) => f.state !== 'online');
      },
      { what: 'the forwards to go offline' },
    );
    const r = await client.ssh('tenant:box.grp.acme/0', groupKey, ['127.0.0.1', 'true']);
    assert.equal(r.code, 255);
    assert.match(r.stderr, disconnect(14, /repository box\.grp\.acme is offline/));
  });
});
