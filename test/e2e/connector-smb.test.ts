import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { haveSamba, startSamba } from '../helpers/samba.js';
import { run, tempDir } from '../helpers/util.js';

describe('connector: SMB through a lease port (Samba)', {
  skip: haveSamba ? false : 'smbd/smbclient not installed',
}, () => {
  let gw: TestGateway;
  let smb: Awaited<ReturnType<typeof startSamba>> | undefined;
  let conn: TestConnector;
  let sambaProblem: string | undefined;

  before(async () => {
    try {
      smb = await startSamba();
    } catch (e) {
      sambaProblem = (e as Error).message;
      return;
    }
    writeFileSync(join(smb.share, 'hello.txt'), 'hello over smb\n');
    gw = await startGateway();
    const keyFile = await gw.addTenant('acme');
    conn = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile,
      repositories: { files: { share: `smb://127.0.0.1:${smb.port}` } },
    });
  });
  after(async () => {
    await conn?.stop();
    await gw?.stop();
    await smb?.stop();
  });

  test('smbclient -p <lease> lists, reads and writes the share', async (t) => {
    if (sambaProblem) return t.skip(`smbd would not start here: ${sambaProblem}`);
    const lease = await conn.leasePort('files/share');
    const dir = tempDir('tether-smbc-');
    const local = join(dir, 'up.txt');
    writeFileSync(local, 'written through the tunnel\n');
    const r = await run(
      'smbclient',
      [
        '-N',
        '-p',
        String(lease),
        '//127.0.0.1/share',
        '-c',
        `ls; get hello.txt ${join(dir, 'got.txt')}; put ${local} up.txt`,
      ],
      { timeout: 20_000 },
    );
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /hello\.txt/);
    assert.equal(readFileSync(join(dir, 'got.txt'), 'utf8'), 'hello over smb\n');
    assert.equal(readFileSync(join(smb!.share, 'up.txt'), 'utf8'), 'written through the tunnel\n');
    const st = await conn.repo('files/share');
    assert.equal(st?.service, 'smb');
    assert.ok(st!.bytesIn > 0 && st!.bytesOut > 0);
  });
});
