import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { sshForward } from '../helpers/openssh.js';
import { startEchoServer, type TestServer, tcpExchange } from '../helpers/servers.js';
import { makeCa, makeServerCert, type TestCa } from '../helpers/tls-certs.js';
import { lastError, startedLine } from '../helpers/transports.js';
import { tempDir } from '../helpers/util.js';

const DAY = 86_400_000;

/** The tunnel over TLS (tunnel.tls, gateway: "tls://…"): same tenants, keys and leases as plain SSH. */
describe('tunnel over TLS', { concurrency: 3 }, () => {
  let dir: string;
  let ca: TestCa;
  let otherCa: TestCa;
  let gw: TestGateway;
  let bad: TestGateway;
  let echo: TestServer;
  let key: string;
  let badKey: string;
  let tlsAddr: string;
  const connectors: TestConnector[] = [];

  before(async () => {
    dir = tempDir('tether-tls-');
    ca = await makeCa(dir, 'Tether Test CA');
    otherCa = await makeCa(dir, 'Some Other CA');
    const good = await makeServerCert(dir, ca, { names: ['localhost', '127.0.0.1'], file: 'gw' });
    const expired = await makeServerCert(dir, ca, {
      names: ['localhost', '127.0.0.1'],
      file: 'expired',
      notBefore: new Date(Date.now() - 30 * DAY),
      notAfter: new Date(Date.now() - 2 * DAY),
    });
    const elsewhere = await makeServerCert(dir, ca, { names: ['gw.other.example'], file: 'elsewhere' });
    [gw, bad, echo] = await Promise.all([
      startGateway({
        config: { tunnel: { tls: { listen: '127.0.0.1:0', cert: good.certFile, key: good.keyFile } } },
      }),
      startGateway({
        config: {
          tunnel: {
            tls: { listen: '127.0.0.1:0', cert: expired.certFile, key: expired.keyFile },
            websocket: {
              listen: '127.0.0.1:0',
              path: '/tunnel',
              cert: elsewhere.certFile,
              key: elsewhere.keyFile,
            },
          },
        },
      }),
      startEchoServer(),
    ]);
    tlsAddr = startedLine(gw).tunnel_tls!;
    assert.match(tlsAddr, /^tls:\/\/127\.0\.0\.1:\d+$/);
    [key, badKey] = await Promise.all([gw.addTenant('acme'), bad.addTenant('acme')]);
  });

  after(async () => {
    await Promise.all(connectors.map((c) => c.stop()));
    await Promise.all([gw?.stop(), bad?.stop(), echo?.close()]);
  });

  /**
   * A connector of acme. The tests run three at a time, and a gateway spreads a lease port's
   * connections over every session serving its label: a test that moves traffic through a lease
   * port gives it a repository no other test serves (`label`), so that another test's connector,
   * stopping, cannot cut its connection.
   */
  async function connector(
    gateway: string,
    config: Record<string, unknown>,
    o: { waitActive?: boolean; keyFile?: string; label?: string } = {},
  ): Promise<TestConnector> {
    const c = await startConnector({
      gateway,
      tenant: 'acme',
      keyFile: o.keyFile ?? key,
      repositories: { grp: { [o.label ?? 'echo']: `tcp://127.0.0.1:${echo.port}` } },
      config,
      waitActive: o.waitActive,
    });
    connectors.push(c);
    return c;
  }

  test('a connector through tls:// forwards traffic through its lease port; status and ping name the route', async () => {
    const c = await connector(tlsAddr, { gateway_ca: ca.certFile }, { label: 'echo-tls' });
    const port = await c.leasePort('grp/echo-tls');
    const payload = Buffer.alloc(256 * 1024, 7);
    // When the answer is cut short, what both sides said.
    const said = () =>
      [
        'gateway:',
        ...gw.output.text().split('\n').slice(-30),
        'connector:',
        ...c.output.text().split('\n').slice(-15),
      ].join('\n');
    const back = await tcpExchange(port, payload, payload.length).catch((e: Error) => {
      throw new Error(`${e.message}\n${said()}`);
    });
    assert.equal(back.length, payload.length, `every byte came back through the TLS tunnel\n${said()}`);
    assert.ok(back.equals(payload), 'the bytes came back through the TLS tunnel unchanged');

    const st = await c.status();
    assert.equal(st.transport, 'tls');
    assert.equal(st.gateway, tlsAddr);
    assert.match(
      st.route ?? '',
      /^tls to tls:\/\/127\.0\.0\.1:\d+ \(direct\), TLS certificate checked against gateway_ca .*tether-test-ca\.crt$/,
    );
    const text = await c.cli(['status']);
    assert.match(text.stdout, /^route: tls to tls:\/\/127\.0\.0\.1:\d+ \(direct\)/m);

    const ping = await c.cli(['ping']);
    assert.equal(ping.code, 0, ping.stderr);
    assert.match(
      ping.stdout,
      new RegExp(`^pong from ${tlsAddr.replace(/\./g, '\\.')} in \\d+\\.\\d ms$`, 'm'),
    );
    assert.match(
      ping.stdout,
      /^ {2}route: tls to tls:\/\/127\.0\.0\.1:\d+ \(direct\), TLS certificate checked/m,
    );
    assert.match(ping.stdout, /^ {2}session: the running connector's$/m);

    // The lease is the tenant's, as on the plain SSH port.
    const t = await gw.api('GET', '/v1/tenants/acme');
    const fw = (t.json as { tenant: { forwards: Array<{ label: string; port: number; state: string }> } })
      .tenant.forwards;
    assert.deepEqual(
      fw.filter((f) => f.label === 'grp/echo-tls').map((f) => [f.port, f.state]),
      [[port, 'online']],
    );
    await c.stop();
  });

  test('TLS on the plain SSH port is accepted when tunnel.tls is configured', async () => {
    const c = await connector(
      `tls://127.0.0.1:${gw.sshPort}`,
      { gateway_ca: ca.certFile },
      { label: 'echo-ssh-port' },
    );
    const port = await c.leasePort('grp/echo-ssh-port');
    assert.equal((await tcpExchange(port, 'over the SSH port', 17)).toString(), 'over the SSH port');
    await c.stop();
  });

  test('ping with no connector running opens its own TLS session and says so', async () => {
    const c = await connector(tlsAddr, { gateway_ca: ca.certFile }, { waitActive: true });
    await c.stop();
    const ping = await c.cli(['ping']);
    assert.equal(ping.code, 0, ping.stderr);
    assert.match(ping.stdout, /^ {2}session: a new one, set up in \d+ ms$/m);
    const json = await c.cli(['ping', '--json']);
    const j = JSON.parse(json.stdout) as { transport: string; route: string; ms: number };
    assert.equal(j.transport, 'tls');
    assert.ok(j.ms > 0);
  });

  test('wrong CA: the certificate is refused, status says by whom and what to do', async () => {
    const c = await connector(tlsAddr, { gateway_ca: otherCa.certFile }, { waitActive: false });
    const st = await lastError(c, /not signed by/);
    assert.equal(st.connected, false);
    assert.match(
      st.lastError!,
      /^tls:\/\/127\.0\.0\.1:\d+: the gateway's TLS certificate \(CN=localhost, issued by CN=Tether Test CA\) is not signed by the CA in gateway_ca \(.*some-other-ca\.crt\) \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\): set gateway_ca to the CA that signed it$/,
    );
    const text = await c.cli(['status']);
    assert.match(text.stdout, /last error: .*is not signed by the CA in gateway_ca/);
    // Without gateway_ca the system store does not know the test CA either.
    const d = await connector(tlsAddr, {}, { waitActive: false });
    const st2 = await lastError(d, /not signed by/);
    assert.match(st2.lastError!, /is not signed by this system's CA store/);
    await Promise.all([c.stop(), d.stop()]);
  });

  test('insecure_skip_verify: connects although the certificate is not trusted here, and says so loudly', async () => {
    const c = await connector(tlsAddr, { gateway_ca: undefined, insecure_skip_verify: true });
    await c.output.wait(
      /"event":"connector\.tls_verify_disabled".*INSECURE: the gateway's TLS certificate is NOT checked/,
    );
    await c.output.wait(/"event":"connector\.tls_unverified".*INSECURE: using the gateway's TLS connection/);
    const st = await c.status();
    assert.match(st.route ?? '', /TLS certificate NOT CHECKED \(insecure_skip_verify\)/);
    await c.stop();
  });

  test('expired certificate: refused with its end date', async () => {
    const addr = startedLine(bad).tunnel_tls!;
    const c = await connector(addr, { gateway_ca: ca.certFile }, { waitActive: false, keyFile: badKey });
    const st = await lastError(c, /expired/);
    assert.match(
      st.lastError!,
      /^tls:\/\/127\.0\.0\.1:\d+: the gateway's TLS certificate \(CN=localhost, issued by CN=Tether Test CA\) expired on \w{3} +\d+ [\d:]+ \d{4} GMT: the gateway's operator must renew it$/,
    );
    await c.stop();
  });

  test('certificate for another name: refused, naming what it is for', async () => {
    const addr = startedLine(bad).tunnel_websocket!;
    const c = await connector(addr, { gateway_ca: ca.certFile }, { waitActive: false, keyFile: badKey });
    const st = await lastError(c, /is for/);
    assert.match(
      st.lastError!,
      /^wss:\/\/127\.0\.0\.1:\d+\/tunnel: the gateway's TLS certificate \(CN=gw\.other\.example, issued by CN=Tether Test CA\) is for DNS:gw\.other\.example, not 127\.0\.0\.1: use a gateway address the certificate names$/,
    );
    await c.stop();
  });

  test('plain OpenSSH through a TLS ProxyCommand (openssl s_client) gets its forward', async () => {
    const tlsPort = Number(tlsAddr.split(':').pop());
    const ssh = await sshForward({
      sshPort: 1,
      tenant: 'acme',
      keyFile: key,
      forwards: [{ label: 'grp/openssh', port: echo.port }],
      extraArgs: [
        '-o',
        `ProxyCommand=openssl s_client -quiet -verify_return_error -verify_hostname localhost -CAfile ${ca.certFile} -connect 127.0.0.1:${tlsPort}`,
      ],
    });
    try {
      const port = ssh.ports.get('grp/openssh');
      assert.ok(port, ssh.stderr.text());
      assert.equal((await tcpExchange(port, 'openssh over tls', 16)).toString(), 'openssh over tls');
    } finally {
      await ssh.stop();
    }
  });

  test('plain SSH to the TLS port: the connector is told to use tls://, the gateway logs it', async () => {
    const plain = tlsAddr.replace(/^tls:\/\//, '');
    const c = await connector(plain, {}, { waitActive: false });
    const st = await lastError(c, /refused the connection/);
    assert.equal(
      st.lastError,
      `the gateway at ${plain} refused the connection: this port expects TLS; in connect.yaml use gateway: "tls://host:port"`,
    );
    await gw.output.wait(/"event":"tunnel\.plain_ssh_on_tls_port"/);
    await c.stop();
  });
});
