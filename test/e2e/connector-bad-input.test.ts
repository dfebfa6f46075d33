import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { generateKeyPair } from '../../src/core/ssh-keys.js';
import { BIN, run, tempDir } from '../helpers/util.js';

/** `tether connector run` with this connect.yaml: what does the user see? */
describe('connector: bad input says what is wrong', { concurrency: 4 }, () => {
  let dir: string;
  let key: string;
  before(() => {
    dir = tempDir('tether-bad-');
    key = join(dir, 'key');
    writeFileSync(key, generateKeyPair().privateKey, { mode: 0o600 });
  });

  let n = 0;
  async function runWith(yaml: string | null, cmd = 'run') {
    const file = join(dir, `connect-${++n}.yaml`);
    if (yaml !== null) writeFileSync(file, yaml);
    const env = { ...process.env };
    delete env.TETHER_STATE_DIR;
    const r = await run(process.execPath, [BIN, 'connector', cmd, '-c', file], { env, timeout: 60_000 });
    return { ...r, file };
  }

  const head = () => `gateway: "127.0.0.1:1"\ntenant: acme\nssh_key: "${key}"\n`;

  test('missing config file', async () => {
    const r = await runWith(null);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr,
      `tether: ${r.file}: cannot read config: file not found (create one with "tether connector init")\n`,
    );
  });

  test('YAML syntax error: line and column', async () => {
    const r = await runWith(`${head()}repositories:\n  g:\n    a: "http://x"\n   b: "http://y"\n`);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /connect-\d+\.yaml: YAML syntax error at line 7, column \d+: All mapping items must start at the same column/,
    );
  });

  test('unknown key', async () => {
    const r = await runWith(`${head()}repos:\n  g:\n    a: "http://x"\n`);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, `tether: ${r.file}: repos: unknown key\n`);
  });

  test('unknown service', async () => {
    const r = await runWith(`${head()}repositories:\n  files:\n    ftp: "ftp://files.internal:21"\n`);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr,
      `tether: ${r.file}: repositories.files.ftp: unknown service "ftp": use one of smb, webdav, cq5, cmis, alfresco, ssh, http, https, tcp\n`,
    );
  });

  test('tcp:// without a port', async () => {
    const r = await runWith(`${head()}repositories:\n  db:\n    pg: "tcp://db.internal"\n`);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr,
      `tether: ${r.file}: repositories.db.pg: tcp needs a port: tcp://db.internal:port\n`,
    );
  });

  test('webdav without a scheme', async () => {
    const r = await runWith(
      `${head()}repositories:\n  example_group:\n    example_webdav: "webdav://webdav.example.com:80/"\n`,
    );
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr,
      `tether: ${r.file}: repositories.example_group.example_webdav: webdav needs a scheme: webdav+http:// or webdav+https://\n`,
    );
  });

  test('port out of range', async () => {
    const r = await runWith(`${head()}repositories:\n  g:\n    big: "smb://fs:70000"\n`);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, `tether: ${r.file}: repositories.g.big: port 70000 is out of range (1-65535)\n`);
  });

  test('duplicate repository label', async () => {
    const r = await runWith(`${head()}repositories:\n  docs:\n    wiki: "http://a"\n    wiki: "http://b"\n`);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr,
      `tether: ${r.file}: repositories.docs.wiki: duplicate repository label docs/wiki (line 7; first defined on line 6)\n`,
    );
  });

  test('several problems are listed together', async () => {
    const r = await runWith(
      `${head()}colour: blue\nrepositories:\n  g:\n    a: "tcp://x"\n    b: "cmis://y"\n`,
    );
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /colour: unknown key/);
    assert.match(r.stderr, /repositories\.g\.a: tcp needs a port/);
    assert.match(r.stderr, /repositories\.g\.b: cmis needs a scheme/);
  });

  test('key file missing', async () => {
    const r = await runWith(`gateway: "127.0.0.1:1"\ntenant: acme\nssh_key: ./no-such-key\n`);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr,
      `tether: ssh_key ${join(dir, 'no-such-key')}: file not found (run "tether connector init" to create a key pair, ` +
        'or set ssh_key to the private key your gateway operator gave you)\n',
    );
  });

  test('key file readable by others: refused with the OpenSSH warning', async () => {
    const open = join(dir, 'open-key');
    writeFileSync(open, generateKeyPair().privateKey);
    chmodSync(open, 0o644);
    const r = await runWith(`gateway: "127.0.0.1:1"\ntenant: acme\nssh_key: ./open-key\n`);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr,
      `tether: WARNING: UNPROTECTED PRIVATE KEY FILE! Permissions 0644 for '${open}' are too open. ` +
        'It is required that your private key files are NOT accessible by others. ' +
        `This private key will be ignored. Fix it with: chmod 600 ${open}\n`,
    );
    // `start` checks before going to the background, so the user sees it too
    const s = await runWith(`gateway: "127.0.0.1:1"\ntenant: acme\nssh_key: ./open-key\n`, 'start');
    assert.equal(s.code, 2, s.stderr);
    assert.match(s.stderr, /UNPROTECTED PRIVATE KEY FILE/);
  });

  test('a public key where the private key belongs', async () => {
    const pub = join(dir, 'pub-key');
    writeFileSync(pub, `${generateKeyPair().publicKey}\n`, { mode: 0o600 });
    const r = await runWith(`gateway: "127.0.0.1:1"\ntenant: acme\nssh_key: ./pub-key\n`);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr,
      `tether: ssh_key ${pub}: this is a public key; ssh_key must name the PRIVATE key\n`,
    );
  });

  test('no tenant yet', async () => {
    const r = await runWith(`gateway: "127.0.0.1:1"\nssh_key: "${key}"\n`);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr,
      `tether: ${r.file}: tenant is not set (run "tether connector register --token T", or add "tenant: <id>")\n`,
    );
  });
});
