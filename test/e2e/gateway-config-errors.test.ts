import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { BIN, run, tempDir } from '../helpers/util.js';

/** `tether gateway` refuses a bad gateway.yaml or data dir with a message that names the problem. */
describe('tether gateway: bad configuration and data dir', () => {
  test('a data dir that cannot be written stops the start with a clear message', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'file'), 'x');
    const r = await run(process.execPath, [BIN, 'gateway'], {
      env: { ...process.env, TETHER_DATA_DIR: join(dir, 'file', 'data') },
    });
    assert.notEqual(r.code, 0);
    assert.match(
      r.stderr,
      /tether: data dir .*file\/data is not writable \(ENOTDIR\); set data_dir or TETHER_DATA_DIR/,
    );
  });

  test('gateway.yaml errors name the key and what is wrong', async () => {
    const dir = tempDir();
    const cases: Array<[string, RegExp]> = [
      ['tunnel:\n  listen: 2222\n', /tunnel\.listen: .*(listen address|expected string)/],
      ['tunnell: {}\n', /tunnell: unknown key/],
      ['forwards:\n  ports: "5000-4000"\n', /forwards\.ports: "5000-4000" is not a port range/],
      ['forwards:\n  default_quota: -3\n', /forwards\.default_quota: /],
      ['store: mysql://x\n', /store: use "sqlite" or a "postgres:\/\/user@host\/db" URL/],
      [
        // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${VAR} reference for gateway.yaml
        'admin:\n  listen: "${NOPE_NOT_SET}"\n',
        /admin\.listen: environment variable NOPE_NOT_SET is not set/,
      ],
      ['tunnel: [\n', /YAML syntax error at line \d+, column \d+/],
      ['cluster: { node_id: a, advertise: b }\n', /cluster: a cluster needs a postgres store/],
    ];
    for (const [yaml, re] of cases) {
      const f = join(dir, 'gw.yaml');
      writeFileSync(f, yaml);
      const r = await run(process.execPath, [BIN, 'gateway', '-c', f]);
      assert.equal(r.code, 2, `${yaml}: ${r.stderr}`);
      assert.match(r.stderr, re, yaml);
    }
    const missing = await run(process.execPath, [BIN, 'gateway', '-c', join(dir, 'none.yaml')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /none\.yaml: cannot read config: file not found/);
  });
});

describe('tether gateway: an upstream CA that cannot be used', () => {
  test('a missing or non-PEM upstream_ca stops the start with a message naming the key and the file', async () => {
    const dir = tempDir();
    const notPem = join(dir, 'ca.txt');
    writeFileSync(notPem, 'not a certificate\n');
    for (const [file, re] of [
      [join(dir, 'missing.pem'), /http_proxy upstream_ca: cannot read .*missing\.pem \(ENOENT\)/],
      [notPem, /http_proxy upstream_ca: .*ca\.txt holds no PEM certificate/],
    ] as const) {
      const f = join(dir, 'gw.yaml');
      writeFileSync(
        f,
        [
          `data_dir: ${join(dir, 'data')}`,
          'tunnel: { listen: "127.0.0.1:0" }',
          'admin: { listen: "127.0.0.1:0" }',
          'http_proxy:',
          '  listen: "127.0.0.1:0"',
          '  routes:',
          '    - to: "https://127.0.0.1:1"',
          '      auth: { type: none }',
          `      upstream_ca: "${file}"`,
          '',
        ].join('\n'),
      );
      const r = await run(process.execPath, [BIN, 'gateway', '-c', f]);
      assert.notEqual(r.code, 0, r.stderr);
      assert.match(r.stderr, re);
    }
  });
});
