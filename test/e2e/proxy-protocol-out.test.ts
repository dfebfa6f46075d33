// test-timeout: 180000 (a gateway, a connector and nginx; about 10 s alone)
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { freePort, startServerProcess, stopProcess, tempDir, waitFor } from '../helpers/util.js';

/**
 * PROXY protocol out to the private service: a repository with `proxy_protocol: v1|v2` makes the
 * connector send the cloud caller's address first. The destination is real nginx
 * (`listen … proxy_protocol`, `$proxy_protocol_addr` in its access log); the caller connects to
 * the lease port from 127.0.0.3, so the log tells whose address arrived.
 */

const NGINX = '/usr/sbin/nginx';

async function startNginx(): Promise<{ v1: number; v2: number; log: string; p: ChildProcess }> {
  const dir = tempDir('tether-nginx-');
  const [v1, v2] = [await freePort(), await freePort()];
  const log = join(dir, 'access.log');
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    [
      'worker_processes 1;',
      `pid ${join(dir, 'nginx.pid')};`,
      `error_log ${join(dir, 'error.log')};`,
      'events { worker_connections 64; }',
      'http {',
      `  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi;`,
      `  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;`,
      "  log_format pp 'pp=$proxy_protocol_addr:$proxy_protocol_port remote=$remote_addr';",
      `  access_log ${log} pp;`,
      `  server { listen 127.0.0.1:${v1} proxy_protocol; location / { return 200 "v1 says $proxy_protocol_addr\\n"; } }`,
      `  server { listen 127.0.0.1:${v2} proxy_protocol; location / { return 200 "v2 says $proxy_protocol_addr\\n"; } }`,
      '}',
      '',
    ].join('\n'),
  );
  const { process: p } = await startServerProcess(
    NGINX,
    ['-p', dir, '-c', conf, '-g', 'daemon off;'],
    [v1, v2],
  );
  return { v1, v2, log, p };
}

/** GET / through the lease port from `localAddress`; the response body. */
function get(port: number, localAddress: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    let got = '';
    s.on('connect', () => s.write('GET / HTTP/1.1\r\nHost: intranet\r\nConnection: close\r\n\r\n'));
    s.on('data', (c: Buffer) => {
      got += c.toString();
    });
    s.on('error', reject);
    s.on('close', () => resolve(got));
  });
}

describe('PROXY protocol out: the connector names the cloud caller to nginx', {
  skip: !existsSync(NGINX) && 'nginx is not installed',
}, () => {
  let gw: TestGateway;
  let conn: TestConnector;
  let nginx: Awaited<ReturnType<typeof startNginx>>;

  before(async () => {
    nginx = await startNginx();
    gw = await startGateway();
    const keyFile = await gw.addTenant('acme');
    conn = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile,
      repositories: {
        web: {
          one: { uri: `http://127.0.0.1:${nginx.v1}`, proxy_protocol: 'v1' },
          two: { uri: `http://127.0.0.1:${nginx.v2}`, proxy_protocol: 'v2' },
          plain: `http://127.0.0.1:${nginx.v2}`,
        } as unknown as Record<string, string>,
      },
    });
  });
  after(async () => {
    await conn?.stop();
    await gw?.stop();
    if (nginx) await stopProcess(nginx.p, 2_000);
  });

  test('v1 and v2 carry the caller address (127.0.0.3) through the gateway and the connector', async () => {
    const one = await get(await conn.leasePort('web/one'), '127.0.0.3');
    assert.match(one, /^HTTP\/1\.1 200/);
    assert.match(one, /v1 says 127\.0\.0\.3\n/);
    const two = await get(await conn.leasePort('web/two'), '127.0.0.3');
    assert.match(two, /v2 says 127\.0\.0\.3\n/);
    const log = await waitFor(
      () => {
        const t = readFileSync(nginx.log, 'utf8');
        return t.split('\n').filter((l) => l.startsWith('pp=')).length >= 2 ? t : null;
      },
      { what: 'two lines in the nginx access log' },
    );
    // $remote_addr stays the connector's own address (nginx's real_ip module would swap it)
    assert.match(log, /^pp=127\.0\.0\.3:\d+ remote=127\.0\.0\.1$/m);
    assert.equal(log.split('\n').filter((l) => l.startsWith('pp=127.0.0.3:')).length, 2);
  });

  test('a repository without proxy_protocol sends none (nginx refuses the bare request)', async () => {
    const plain = await get(await conn.leasePort('web/plain'), '127.0.0.3');
    assert.doesNotMatch(plain, /says/);
  });
});
