// test-timeout: 300000 (Samba, Apache, a gateway restarted and two connector starts on a loaded machine)
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { haveApache, startApacheDav, type TestDav } from '../helpers/apache-dav.js';
import { connectYaml, startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { haveSamba, startSamba } from '../helpers/samba.js';
import { startHttpServer, type TestServer } from '../helpers/servers.js';
import { nextEvent, run, tempDir, waitFor } from '../helpers/util.js';

type Samba = Awaited<ReturnType<typeof startSamba>>;

/**
 * Managed repositories end to end: the operator proposes with the real CLI, the real connector
 * decides by its connect.yaml policy, real Samba and Apache WebDAV stand behind.
 */
describe('managed repositories: the operator proposes, the connector disposes', {
  skip: !haveSamba ? 'smbd/smbclient not installed' : !haveApache ? 'apache2 not installed' : false,
}, () => {
  let gw: TestGateway;
  let smb: Samba;
  let dav: TestDav;
  let web: TestServer;
  let conn: TestConnector;
  let dir: string;
  let keyFile: string;
  const policy = (smbPort: number) => ({
    allow: [{ cidr: '127.0.0.1/32', ports: String(smbPort), services: ['smb'] }],
  });
  const opts = () => ({
    gateway: gw.sshPort,
    tenant: 'acme',
    keyFile,
    dir,
    repositories: { local: { web: `http://127.0.0.1:${web.port}` } },
    config: { managed: policy(smb.port) },
  });

  before(async () => {
    smb = await startSamba();
    writeFileSync(join(smb.share, 'hello.txt'), 'hello over smb\n');
    dav = await startApacheDav();
    web = await startHttpServer('local-web');
    gw = await startGateway();
    keyFile = await gw.addTenant('acme');
    dir = tempDir('tether-managed-');
    conn = await startConnector(opts());
  });
  after(async () => {
    await conn?.stop();
    await gw?.stop();
    await smb?.stop();
    await dav?.stop();
    await web?.close();
  });

  const managedState = async (label: string) => (await conn.status()).managed?.find((m) => m.label === label);
  const listed = async () => {
    const r = await gw.tether(['tenants', 'repos', 'list', 'acme']);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  };
  const smbLs = (port: number) =>
    run('smbclient', ['-N', '-p', String(port), '//127.0.0.1/share', '-c', 'ls'], { timeout: 30_000 });

  test('an SMB share the policy allows: served, smbclient lists it through its lease port', async () => {
    const add = await gw.tether([
      'tenants',
      'repos',
      'add',
      'acme',
      'files/share',
      `smb://127.0.0.1:${smb.port}`,
    ]);
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /proposed files\/share → smb:\/\/127\.0\.0\.1:\d+ for the connectors of acme/);
    const lease = await conn.leasePort('files/share');
    assert.equal((await managedState('files/share'))?.state, 'serving');
    const st = await conn.status();
    assert.equal(st.repositories.find((r) => r.label === 'files/share')?.source, 'managed');
    assert.equal(st.repositories.find((r) => r.label === 'local/web')?.source, 'connect.yaml');
    const r = await smbLs(lease);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /hello\.txt/);
    await waitFor(
      async () => /files\/share\s+smb:\/\/127\.0\.0\.1:\d+\s+\S+ SHA256:\S+\s+serving/.test(await listed()),
      {
        timeout: 20_000,
        what: 'the CLI to show files/share serving',
      },
    );
    // both sides audit it
    await gw.output.wait(/"event":"managed\.accepted".*"label":"files\/share"/, 10_000);
    await conn.output.wait(/"event":"managed\.accepted".*"label":"files\/share"/, 10_000);
    // `tether connector status` lists it apart, with where it came from
    const cs = await conn.cli(['status']);
    assert.equal(cs.code, 0, cs.stderr);
    assert.match(
      cs.stdout,
      /managed repositories \(proposed by the gateway, checked against managed\.allow\):/,
    );
    assert.match(cs.stdout, /files\/share\s+smb:\/\/127\.0\.0\.1:\d+\s+\d+\s+\d+\s+gateway\s+serving/);
  });

  test('a WebDAV URI outside the policy: refused with the reason, nothing dialled', async () => {
    const uri = `webdav+http://127.0.0.1:${dav.port}/`;
    const add = await gw.tether(['tenants', 'repos', 'add', 'acme', 'docs/dav', uri]);
    assert.equal(add.code, 0, add.stderr);
    const reason = `127.0.0.1:${dav.port} is outside managed.allow: no rule allows the service webdav`;
    await waitFor(async () => (await listed()).includes(`refused: ${reason}`), {
      timeout: 20_000,
      what: 'the CLI to show the refusal',
    });
    const json = await gw.api('GET', '/v1/tenants/acme/managed-repositories');
    const dav1 = (
      json.json as {
        repositories: Array<{ label: string; state: string; connectors: Array<{ reason: string }> }>;
      }
    ).repositories.find((r) => r.label === 'docs/dav');
    assert.equal(dav1?.state, 'refused');
    assert.equal(dav1?.connectors[0]?.reason, reason);
    assert.equal(
      (await conn.status()).repositories.some((r) => r.label === 'docs/dav'),
      false,
    );
    assert.deepEqual(dav.requests(), [], 'Apache saw no request');
    await gw.output.wait(/"event":"managed\.refused".*"label":"docs\/dav"/, 10_000);
  });

  test('a bad proposal is refused by the CLI and the API, and changes nothing', async () => {
    const bad = await gw.tether(['tenants', 'repos', 'add', 'acme', 'files/x', 'ftp://10.0.0.5']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /invalid URI for files\/x: unknown service "ftp"/);
    const lbl = await gw.tether(['tenants', 'repos', 'add', 'acme', 'nogroup', 'smb://10.0.0.5']);
    assert.equal(lbl.code, 2);
    assert.match(lbl.stderr, /invalid repository "nogroup": use <group>\/<repo>/);
    const nobody = await gw.tether(['tenants', 'repos', 'add', 'ghost', 'files/x', 'smb://10.0.0.5']);
    assert.equal(nobody.code, 3);
    const rm = await gw.tether(['tenants', 'repos', 'remove', 'acme', 'files/none']);
    assert.equal(rm.code, 3);
    assert.match(rm.stderr, /tenant acme has no managed repository "files\/none"/);
    const out = await listed();
    assert.doesNotMatch(out, /files\/x/);
    assert.match(out, /files\/share/);
  });

  test('narrowing the policy and reloading withdraws the entry and ends its open connections', async () => {
    const lease = await conn.leasePort('files/share');
    const sock = net.connect({ host: '127.0.0.1', port: lease });
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    sock.on('error', () => {});
    await nextEvent(sock, 'connect');
    await waitFor(async () => (await conn.repo('files/share'))?.connections === 1, {
      what: 'the SMB connection to be open',
    });
    const doc = connectYaml({ ...opts(), config: { managed: policy(1) } });
    writeFileSync(conn.configFile, stringify(doc));
    const reload = await conn.cli(['reload']);
    assert.equal(reload.code, 0, reload.stderr);
    await closed;
    const m = await waitFor(
      async () => {
        const s = await managedState('files/share');
        return s?.state === 'withdrawn' ? s : null;
      },
      { what: 'files/share withdrawn' },
    );
    assert.match(
      String(m.reason),
      new RegExp(
        `connect.yaml reloaded: 127\\.0\\.0\\.1:${smb.port} is outside managed\\.allow: no rule allows port ${smb.port} for smb`,
      ),
    );
    assert.equal(
      (await conn.status()).repositories.some((r) => r.label === 'files/share'),
      false,
    );
    await waitFor(async () => /files\/share.*withdrawn: connect\.yaml reloaded/.test(await listed()), {
      timeout: 20_000,
      what: 'the CLI to show the withdrawal',
    });
    // the local entry is untouched
    assert.equal((await conn.repo('local/web'))?.state, 'active');
    // widening it again serves it again
    writeFileSync(conn.configFile, stringify(connectYaml(opts())));
    assert.equal((await conn.cli(['reload'])).code, 0);
    await conn.leasePort('files/share');
  });

  test('connector restarted with the gateway unreachable: local entries and accepted managed ones come back', async () => {
    const lease = await conn.leasePort('files/share');
    await conn.stop();
    await gw.stop();
    conn = await startConnector({ ...opts(), waitActive: false });
    const st = await waitFor(
      async () => {
        const s = await conn.status().catch(() => null);
        return s && s.repositories.length === 2 ? s : null;
      },
      { timeout: 60_000, what: 'the restarted connector to list its repositories' },
    );
    assert.equal(st.connected, false);
    assert.deepEqual(st.repositories.map((r) => `${r.label} ${r.source}`).sort(), [
      'files/share managed',
      'local/web connect.yaml',
    ]);
    const m = st.managed?.find((x) => x.label === 'files/share');
    assert.equal(m?.state, 'serving');
    assert.equal(m?.source, 'state dir');
    assert.equal(
      st.managed?.some((x) => x.label === 'docs/dav'),
      false,
      'a refused proposal is not remembered',
    );
    await conn.output.wait(/"event":"managed\.restored".*"label":"files\/share"/, 10_000);
    // the gateway comes back: both are forwarded again, on their leases
    await gw.restart();
    assert.equal(await conn.leasePort('files/share', 60_000), lease);
    await conn.leasePort('local/web', 60_000);
    const r = await smbLs(lease);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /hello\.txt/);
  });

  test('removing the proposal stops the connector serving it', async () => {
    const rm = await gw.tether(['tenants', 'repos', 'remove', 'acme', 'files/share']);
    assert.equal(rm.code, 0, rm.stderr);
    await waitFor(async () => !(await conn.status()).repositories.some((r) => r.label === 'files/share'), {
      what: 'files/share to go',
    });
    await conn.output.wait(/"event":"managed\.removed".*"label":"files\/share"/, 10_000);
    assert.doesNotMatch(await listed(), /files\/share/);
  });
});
