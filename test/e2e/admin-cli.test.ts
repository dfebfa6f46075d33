import assert from 'node:assert/strict';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { sshForward } from '../helpers/openssh.js';
import { startEchoServer, type TestServer } from '../helpers/servers.js';
import { BIN, run, tempDir } from '../helpers/util.js';

describe('tether tenants and the admin API: bad input', () => {
  let gw: TestGateway;
  let echo: TestServer;
  before(async () => {
    gw = await startGateway();
    echo = await startEchoServer();
  });
  after(async () => {
    await gw?.stop();
    await echo?.close();
  });

  const tenantIds = async () => {
    const r = await gw.api('GET', '/v1/tenants');
    return (r.json as { tenants: Array<{ id: string }> }).tenants.map((t) => t.id);
  };

  test('invalid tenant ids are refused before anything is stored', async () => {
    for (const id of ['Acme', '_acme', 'a b', 'x'.repeat(64), 'ümlaut']) {
      const r = await gw.tether(['tenants', 'add', id]);
      assert.equal(r.code, 2, `${id}: ${r.stderr}`);
      assert.match(r.stderr, /^tether: invalid tenant id ".*": use 1-63 characters a-z, 0-9, "_" or "-"/);
    }
    const api = await gw.api('POST', '/v1/tenants', { id: 'Bad!' });
    assert.equal(api.status, 400);
    assert.match(JSON.stringify(api.json), /id: use 1-63 characters/);
    assert.deepEqual(await tenantIds(), []);
  });

  test('--pub-key: missing, unreadable, a private key or garbage is refused and never stored', async () => {
    const dir = tempDir();
    const missing = await gw.tether(['tenants', 'add', 'k1', '--pub-key', join(dir, 'nope.pub')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /cannot read public key file .*nope\.pub: file not found/);
    const isDir = await gw.tether(['tenants', 'add', 'k1', '--pub-key', dir]);
    assert.match(isDir.stderr, /cannot read public key file .*: it is a directory/);
    await run('ssh-keygen', ['-t', 'ed25519', '-N', '', '-q', '-f', join(dir, 'id')]);
    const priv = await gw.tether(['tenants', 'add', 'k1', '--pub-key', join(dir, 'id')]);
    assert.equal(priv.code, 2);
    assert.match(priv.stderr, /not a usable SSH public key: this is a PRIVATE key; give the public key/);
    writeFileSync(join(dir, 'garbage.pub'), 'ssh-ed25519 AAAAnotbase64!!! x\n');
    const garbage = await gw.tether(['tenants', 'add', 'k1', '--pub-key', join(dir, 'garbage.pub')]);
    assert.equal(garbage.code, 2);
    assert.match(garbage.stderr, /not a usable SSH public key/);
    writeFileSync(join(dir, 'empty.pub'), '');
    const empty = await gw.tether(['tenants', 'add', 'k1', '--pub-key', join(dir, 'empty.pub')]);
    assert.match(empty.stderr, /not a usable SSH public key: the file is empty/);
    assert.deepEqual(await tenantIds(), []);
    // The good case: the supplied key works with plain OpenSSH, and nothing private is printed.
    const ok = await gw.tether(['tenants', 'add', 'k1', '--pub-key', join(dir, 'id.pub')]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, '');
    chmodSync(join(dir, 'id'), 0o600);
    const fwd = await sshForward({
      sshPort: gw.sshPort,
      tenant: 'k1',
      keyFile: join(dir, 'id'),
      forwards: [{ label: 'g/r', port: echo.port }],
    });
    assert.equal(fwd.ports.size, 1);
    await fwd.stop();
  });

  test('quota values that are negative, fractional or not numbers are refused', async () => {
    await gw.addTenant('q');
    for (const bad of ['-1', '1.5', 'abc', '3001', '']) {
      const r = await gw.tether(['tenants', 'change', bad, 'q']);
      assert.equal(r.code, 2, `${bad}: ${r.stderr}`);
      assert.match(r.stderr, /invalid quota ".*": must be a whole number from 0 to 3000/);
      const add = await gw.tether(['tenants', 'add', 'q2', `--ports=${bad}`]);
      assert.equal(add.code, 2);
      assert.match(add.stderr, /invalid quota/);
    }
    for (const bad of [-1, 1.5, 'abc', null]) {
      const r = await gw.api('PATCH', '/v1/tenants/q', { quota: bad });
      assert.equal(r.status, 400);
      assert.match(JSON.stringify(r.json), /quota: must be a whole number from 0 to 3000/);
    }
    const t = (await gw.api('GET', '/v1/tenants/q')).json as { tenant: { quota: number } };
    assert.equal(t.tenant.quota, 20, 'quota unchanged by the bad inputs');
    assert.ok(!(await tenantIds()).includes('q2'));
  });

  test('unknown tenants: change, remove and list say so with exit code 3 and 404', async () => {
    for (const args of [
      ['change', '3', 'ghost'],
      ['remove', 'ghost'],
      ['list', 'ghost'],
      ['enroll', 'ghost'],
    ]) {
      const r = await gw.tether(['tenants', ...args]);
      assert.equal(r.code, 3, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /tenant "ghost" does not exist/);
    }
    assert.equal((await gw.api('DELETE', '/v1/tenants/ghost')).status, 404);
  });

  test('the admin API needs its token, and answers bad JSON and unknown fields with 400', async () => {
    const none = await fetch(`${gw.adminUrl}/v1/tenants`);
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="tether-admin"');
    const wrong = await fetch(`${gw.adminUrl}/v1/tenants`, { headers: { authorization: 'Bearer nope' } });
    assert.equal(wrong.status, 401);
    const metrics = await fetch(`${gw.adminUrl}/metrics`);
    assert.equal(metrics.status, 401);
    const badJson = await gw.api('POST', '/v1/tenants', '{"id": ');
    assert.equal(badJson.status, 400);
    assert.match(JSON.stringify(badJson.json), /request body is not valid JSON/);
    const unknown = await gw.api('POST', '/v1/tenants', { id: 'u', colour: 'red' });
    assert.equal(unknown.status, 400);
    assert.match(JSON.stringify(unknown.json), /colour: unknown key/);
    const typed = await gw.api('POST', '/v1/tenants', { id: 'u', force: 'yes' });
    assert.equal(typed.status, 400);
    assert.match(JSON.stringify(typed.json), /"path":"force"/);
    const created = await gw.api('POST', '/v1/tenants', { id: 'u' });
    assert.equal(created.status, 201);
    assert.match(JSON.stringify(created.json), /BEGIN OPENSSH PRIVATE KEY/);
    const conflict = await gw.api('POST', '/v1/tenants', { id: 'u' });
    assert.equal(conflict.status, 409);
    assert.equal((conflict.json as { error: { code: string } }).error.code, 'TENANT_EXISTS');
    const badKey = await gw.api('POST', '/v1/tenants/u/keys', { public_key: 'hello' });
    assert.equal(badKey.status, 400);
    const badEscape = await gw.api('GET', '/v1/tenants/%E0%A4%A');
    assert.equal(badEscape.status, 400);
    assert.match(JSON.stringify(badEscape.json), /malformed percent-escape/);
    const route = await gw.api('GET', '/v1/nothing');
    assert.equal(route.status, 404);
    const method = await gw.api('PUT', '/v1/tenants');
    assert.equal(method.status, 405);
    const health = await fetch(`${gw.adminUrl}/health`);
    assert.equal(health.status, 200);
  });

  test('secrets are written 0600 and the private key is never stored', async () => {
    for (const f of ['admin.token', 'host_key', 'gateway.json']) {
      assert.equal(statSync(join(gw.dataDir, f)).mode & 0o777, 0o600, f);
    }
    const r = await gw.tether(['tenants', 'add', 'secret-check']);
    const keyBody = r.stdout.split('\n').slice(1, 3).join('');
    const db = readFileSync(join(gw.dataDir, 'tether.db'));
    assert.equal(db.includes(Buffer.from(keyBody)), false);
  });

  test('the CLI says how to reach the gateway when it cannot', async () => {
    const r = await run(process.execPath, [BIN, 'tenants', 'list'], {
      env: { ...process.env, TETHER_ADMIN_URL: 'http://127.0.0.1:1', TETHER_ADMIN_TOKEN: 'x' },
    });
    assert.equal(r.code, 5);
    assert.match(
      r.stderr,
      /cannot reach the gateway admin API at http:\/\/127\.0\.0\.1:1 \(is `tether gateway` running\?\)/,
    );
    const noToken = await run(process.execPath, [BIN, 'tenants', 'list'], {
      env: { ...process.env, TETHER_DATA_DIR: tempDir() },
    });
    assert.equal(noToken.code, 6);
    assert.match(noToken.stderr, /no admin token: set TETHER_ADMIN_TOKEN/);
  });
});
