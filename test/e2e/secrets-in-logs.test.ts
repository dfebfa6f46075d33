import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startHttpServer, type TestServer } from '../helpers/servers.js';
import { tempDir, waitFor } from '../helpers/util.js';

/**
 * A group key sent as userinfo (`CONNECT acme:KEY@…`, `GET http://acme:KEY@…/`) never reaches
 * the gateway log or the audit file; the files the gateway creates are owner-only; a wrong key
 * gets the same bytes back whether the repository exists or not.
 */

/** Sends a raw request head on a fresh socket; resolves with everything the proxy answered. */
function raw(port: number, head: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(head));
    let got = '';
    const t = setTimeout(() => {
      s.destroy();
      resolve(got);
    }, 10_000);
    s.on('data', (c: Buffer) => {
      got += c.toString('latin1');
    });
    s.once('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    s.once('close', () => {
      clearTimeout(t);
      resolve(got);
    });
  });
}

const basic = (user: string, key: string) => `Basic ${Buffer.from(`${user}:${key}`).toString('base64')}`;

describe('secrets in logs, file modes and answers that do not tell existence', () => {
  let gw: TestGateway;
  let port: number;
  let site: TestServer;
  let connector: TestConnector;
  let key: string;
  let auditFile: string;

  before(async () => {
    auditFile = join(tempDir('tether-secrets-audit-'), 'sub', 'audit.log');
    site = await startHttpServer('site');
    gw = await startGateway({
      config: {
        log: { audit: `file:${auditFile}` },
        access_proxy: { listen: '127.0.0.1:0', max_failures: 1000 },
      },
    });
    const m = await gw.output.wait(/"event":"gateway.started".*"access_proxy":"127\.0\.0\.1:(\d+)"/);
    port = Number(m[1]);
    connector = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile: await gw.addTenant('acme'),
      repositories: { grp: { web: `http://127.0.0.1:${site.port}` } },
    });
    key = await gw.groupKey('acme', 'grp');
  });

  after(async () => {
    await connector?.stop();
    await gw?.stop();
    await site?.close();
  });

  test('CONNECT and absolute-form GET with the key as userinfo: refused as before, the key in no log', async () => {
    const connect = await raw(
      port,
      `CONNECT acme:${key}@web.grp.acme:443 HTTP/1.1\r\nHost: acme:${key}@web.grp.acme:443\r\n\r\n`,
    );
    assert.match(connect, /^HTTP\/1\.1 400 /);
    assert.match(connect, /authority must not carry user information/);
    const get = await raw(
      port,
      `GET http://acme:${key}@web.grp.acme/ HTTP/1.1\r\nHost: web.grp.acme\r\nConnection: close\r\n\r\n`,
    );
    assert.match(get, /^HTTP\/1\.1 400 /);
    // with the key also in Proxy-Authorization: the header is redacted, the request works
    const ok = await raw(
      port,
      `GET http://web.grp.acme/ HTTP/1.1\r\nHost: web.grp.acme\r\nProxy-Authorization: ${basic('acme', key)}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(ok, /^HTTP\/1\.1 200 /);
    await gw.output.wait(/"event":"access_proxy.denied".*"authority":"\[redacted\]@web\.grp\.acme:443"/);
    await waitFor(() => readFileSync(auditFile, 'utf8').includes('[redacted]@web.grp.acme:443'), {
      what: 'the redacted CONNECT authority in the audit file',
    });
    await waitFor(() => readFileSync(auditFile, 'utf8').includes('"access_proxy.allowed"'));
    const log = gw.output.text();
    const audit = readFileSync(auditFile, 'utf8');
    assert.ok(!log.includes(key), 'the key is not in the gateway log');
    assert.ok(!audit.includes(key), 'the key is not in the audit file');
    const b64 = Buffer.from(`acme:${key}`).toString('base64');
    assert.ok(!log.includes(b64) && !audit.includes(b64), 'nor its Basic encoding');
  });

  test('a wrong key: the same bytes whether the repository exists or not', async () => {
    const ask = (repo: string) =>
      raw(
        port,
        `CONNECT ${repo}.grp.acme:443 HTTP/1.1\r\nHost: ${repo}.grp.acme:443\r\nProxy-Authorization: ${basic('acme', 'A'.repeat(43))}\r\n\r\n`,
      );
    const existing = await ask('web');
    const missing = await ask('nosuchrepo');
    assert.match(existing, /^HTTP\/1\.1 403 /);
    assert.equal(existing, missing);
    const ghost = await raw(
      port,
      `CONNECT web.grp.abcd:443 HTTP/1.1\r\nHost: web.grp.abcd:443\r\nProxy-Authorization: ${basic('abcd', 'A'.repeat(43))}\r\n\r\n`,
    );
    assert.equal(ghost.replaceAll('abcd', 'acme'), existing, 'a tenant that does not exist: same answer');
  });

  test('files the gateway creates are 0600: audit log, data dir files, sqlite db and its -wal/-shm', async () => {
    const mode = (f: string) => statSync(f).mode & 0o777;
    assert.equal(mode(auditFile).toString(8), '600', 'audit file');
    const files = readdirSync(gw.dataDir);
    for (const f of [
      'gateway.json',
      'admin.token',
      'host_key',
      'tether.db',
      'tether.db-wal',
      'tether.db-shm',
    ]) {
      assert.ok(files.includes(f), `${f} in ${files.join(', ')}`);
    }
    for (const f of files) assert.equal(mode(join(gw.dataDir, f)).toString(8), '600', f);
  });
});
