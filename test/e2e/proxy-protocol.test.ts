// test-timeout: 240000 (a gateway, two haproxy, a connector; about 20 s alone, longer on a loaded machine)
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { key, scrape } from '../helpers/prometheus.js';
import { startEchoServer, type TestServer } from '../helpers/servers.js';
import { freePort, startServerProcess, stopProcess, tempDir, waitFor } from '../helpers/util.js';

/**
 * PROXY protocol into the gateway, with real haproxy in front: `send-proxy-v2` (and its LOCAL
 * health checks) before the tunnel port, `send-proxy` (v1) before a lease port. haproxy connects
 * from 127.0.0.9 (`source`), the only trusted proxy; callers come from other loopback addresses,
 * so every place that shows an address tells which one it saw.
 */

const BALANCER = '127.0.0.9';

/** haproxy in TCP mode: one frontend on a free port to `target`, with `serverOpts`. */
async function haproxy(target: number, serverOpts: string): Promise<{ port: number; p: ChildProcess }> {
  const dir = tempDir('tether-haproxy-pp-');
  const port = await freePort();
  const cfg = [
    'global',
    '  maxconn 200',
    'defaults',
    '  mode tcp',
    '  timeout connect 2s',
    '  timeout client 1h',
    '  timeout server 1h',
    'frontend fe',
    `  bind 127.0.0.1:${port}`,
    '  default_backend be',
    'backend be',
    `  server gw 127.0.0.1:${target} source ${BALANCER} ${serverOpts}`,
    '',
  ].join('\n');
  const file = join(dir, 'haproxy.cfg');
  writeFileSync(file, cfg);
  const { process: p } = await startServerProcess('haproxy', ['-f', file, '-db'], [port]);
  return { port, p };
}

/** Sends `bytes` from `localAddress` to `port`; resolves what came back once the gateway closed. */
function exchange(port: number, bytes: Buffer | string, localAddress?: string, ms = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    let got = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`still open after ${ms} ms (got ${JSON.stringify(got)})`));
    }, ms);
    s.on('connect', () => s.write(bytes));
    s.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      if (got.endsWith('ping')) s.end();
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
}

describe('PROXY protocol into the gateway behind haproxy', () => {
  let gw: TestGateway;
  let echo: TestServer;
  let conn: TestConnector;
  let tunnelLb: { port: number; p: ChildProcess };
  let leaseLb: { port: number; p: ChildProcess };
  let leasePort: number;
  const refused = async (reason: string) =>
    (await scrape(`${gw.adminUrl}/metrics`, { authorization: `Bearer ${gw.adminToken}` })).get(
      key('tether_refused_total', { reason }),
    ) ?? 0;

  before(async () => {
    echo = await startEchoServer();
    gw = await startGateway({
      config: {
        tunnel: { proxy_protocol: 'required', trusted_proxies: [`${BALANCER}/32`] },
        forwards: { proxy_protocol: 'required', trusted_proxies: [BALANCER] },
        proxy_header: { timeout: '1s' },
      },
    });
    const keyFile = await gw.addTenant('acme', [
      '--tunnel-from',
      '127.0.0.1',
      '--allow-from',
      '127.0.0.3,::1',
    ]);
    // v2 with haproxy's health checks (check-send-proxy: a LOCAL header) in front of the tunnel port
    tunnelLb = await haproxy(gw.sshPort, 'send-proxy-v2 check check-send-proxy inter 500');
    conn = await startConnector({
      gateway: tunnelLb.port,
      tenant: 'acme',
      keyFile,
      config: { gateway_fingerprint: gw.hostFingerprint },
      repositories: { g: { echo: `tcp://127.0.0.1:${echo.port}` } },
    });
    leasePort = await conn.leasePort('g/echo');
    leaseLb = await haproxy(leasePort, 'send-proxy');
  });
  after(async () => {
    await conn?.stop();
    if (tunnelLb) await stopProcess(tunnelLb.p, 2_000);
    if (leaseLb) await stopProcess(leaseLb.p, 2_000);
    await gw?.stop();
    await echo?.close();
  });

  test('through send-proxy-v2 the connector logs in with its own address; health checks (LOCAL) pass', async () => {
    const t = (await gw.api('GET', '/v1/tenants/acme')).json as {
      tenant: { sessions: Array<{ source: string }> };
    };
    assert.equal(t.tenant.sessions.length, 1);
    assert.match(
      t.tenant.sessions[0]!.source,
      /^127\.0\.0\.1:\d+$/,
      'the session list shows the caller, not haproxy',
    );
    assert.doesNotMatch(t.tenant.sessions[0]!.source, /127\.0\.0\.9/);
    // tunnel_from 127.0.0.1 let it in: the allowlist judged the PROXY address (haproxy is 127.0.0.9),
    // and haproxy's LOCAL health checks (every 500 ms since it started) were never refused
    assert.deepEqual(
      gw.output.lines.filter((l) => l.includes('"listener":"tunnel"')),
      [],
    );
  });

  test('a direct connection to the tunnel port (not a trusted proxy) is refused and counted', async () => {
    const before = await refused('proxy_untrusted');
    assert.equal(await exchange(gw.sshPort, 'SSH-2.0-OpenSSH_9.6\r\n'), '', 'no SSH banner for it');
    const line = await gw.output.wait(/"reason":"proxy_untrusted".*"listener":"tunnel"/);
    assert.match(
      line.input,
      /tunnel: connection refused: connection from 127\.0\.0\.1, which is not in trusted_proxies \(proxy_protocol: required\)/,
    );
    await waitFor(async () => (await refused('proxy_untrusted')) > before, {
      what: 'proxy_untrusted counted',
    });
  });

  test('send-proxy (v1) before a lease port: the caller address reaches logs and the allowlist', async () => {
    assert.equal(await exchange(leaseLb.port, 'ping', '127.0.0.3'), 'ping');
    await gw.output.wait(/"event":"connection\.opened".*"source":"127\.0\.0\.3:\d+"/);
    // 127.0.0.4 is outside allow_from: refused on its real address, though haproxy (127.0.0.9) carried it
    assert.equal(await exchange(leaseLb.port, 'ping', '127.0.0.4'), '');
    await gw.output.wait(/source address 127\.0\.0\.4 is not in the allow_from list of tenant acme/);
  });

  test('bad headers from the trusted proxy address: each refused, counted, and the gateway unharmed', async () => {
    const from = BALANCER;
    const invalid = await refused('proxy_header_invalid');
    // malformed v1
    assert.equal(await exchange(leasePort, 'PROXY TCP4 not-an-address 127.0.0.1 1 2\r\nping', from), '');
    // IPv4 address in a TCP6 line
    assert.equal(await exchange(leasePort, 'PROXY TCP6 127.0.0.3 ::1 1 2\r\nping', from), '');
    // a v1 line that never ends within 107 bytes
    assert.equal(await exchange(leasePort, `PROXY TCP4 ${'1'.repeat(200)}`, from), '');
    // v2 announcing 60000 bytes (over max_bytes)
    const sig = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
    const big = Buffer.concat([sig, Buffer.from([0x21, 0x11, 0xea, 0x60])]);
    assert.equal(await exchange(leasePort, big, from), '');
    await waitFor(async () => (await refused('proxy_header_invalid')) >= invalid + 4, {
      what: 'four invalid headers counted',
    });
    await gw.output.wait(/v2 header of 60016 bytes, over the 1536-byte bound from 127\.0\.0\.9/);
    // no header where one is required
    assert.equal(await exchange(leasePort, 'ping', from), '');
    await gw.output.wait(/no PROXY header from 127\.0\.0\.9 \(proxy_protocol: required\)/);
    // half a header, then nothing: cut at the deadline (proxy_header.timeout 1 s)
    const t0 = Date.now();
    assert.equal(await exchange(leasePort, 'PROXY TCP4 127.0.0.3 127.0.0.1 5', from), '');
    assert.ok(Date.now() - t0 < 10_000, 'cut by the deadline, not by the test');
    await gw.output.wait(/no complete PROXY header from 127\.0\.0\.9 within 1000 ms/);
    // a spoofed header from an address that is not a trusted proxy
    assert.equal(await exchange(leasePort, 'PROXY TCP4 127.0.0.3 127.0.0.1 1 2\r\nping', '127.0.0.3'), '');
    await gw.output.wait(/"reason":"proxy_untrusted".*"listener":"forwards"/);
    // IPv6 in v1 names an allowed caller (::1)
    assert.equal(await exchange(leasePort, 'PROXY TCP6 ::1 ::1 40000 2\r\nping', from), 'ping');
    await gw.output.wait(/"event":"connection\.opened".*"source":"::1:40000"/);
    // UNKNOWN: the connection's own address (127.0.0.9, outside allow_from: refused by the allowlist)
    assert.equal(await exchange(leasePort, 'PROXY UNKNOWN\r\nping', from), '');
    await gw.output.wait(/source address 127\.0\.0\.9 is not in the allow_from list of tenant acme/);
    // v2 LOCAL on a lease port: the socket address, as for UNKNOWN
    const local = Buffer.concat([sig, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
    assert.equal(await exchange(leasePort, Buffer.concat([local, Buffer.from('ping')]), from), '');
    // still fine afterwards
    assert.equal(await exchange(leaseLb.port, 'ping', '127.0.0.3'), 'ping');
  });
});
