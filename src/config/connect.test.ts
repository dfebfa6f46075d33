import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { isTetherError } from '../errors/index.js';
import { connectConfigFromText, loadConnectConfig, redactedConfig } from './connect.js';

const FILE = '/etc/tether/connect.yaml';

function load(text: string, env: NodeJS.ProcessEnv = {}) {
  return connectConfigFromText(text, FILE, env);
}

function refused(text: string, env: NodeJS.ProcessEnv = {}): string {
  try {
    load(text, env);
  } catch (e) {
    assert.ok(isTetherError(e, 'CONFIG_INVALID'), `expected CONFIG_INVALID, got ${String(e)}`);
    return e.message;
  }
  assert.fail('expected the config to be refused');
}

const DESIGN_EXAMPLE = `
gateway: "gateway.example.com:2222"      # "appliance:" accepted as an alias
ssh_key: "/etc/tether/connect_key"
repositories:
  example_group:
    example_repo: "smb://samba.example.com:139"
    example_webdav: "webdav+http://webdav.example.com:80/"
    example_cmis: "cmis+https://cmis.example.com:443/cmisatom"
`;

describe('connect.yaml', () => {
  test('the example from DESIGN.md loads, with defaults', () => {
    const cfg = load(DESIGN_EXAMPLE);
    assert.deepEqual(cfg.gateway, { host: 'gateway.example.com', port: 2222 });
    assert.equal(cfg.sshKey, '/etc/tether/connect_key');
    assert.equal(cfg.tenant, undefined);
    assert.equal(cfg.gatewayFingerprint, undefined);
    assert.equal(cfg.keepaliveInterval, 15_000);
    assert.equal(cfg.keepaliveCountMax, 3);
    assert.deepEqual(cfg.reconnect, { minDelay: 500, maxDelay: 30_000 });
    assert.equal(cfg.stateDir, '/etc/tether/.tether-connector');
    assert.deepEqual(
      cfg.repositories.map((r) => [r.label, r.service, r.scheme, r.host, r.port, r.path]),
      [
        ['example_group/example_repo', 'smb', null, 'samba.example.com', 139, null],
        ['example_group/example_webdav', 'webdav', 'http', 'webdav.example.com', 80, '/'],
        ['example_group/example_cmis', 'cmis', 'https', 'cmis.example.com', 443, '/cmisatom'],
      ],
    );
    assert.ok(Object.isFrozen(cfg) && Object.isFrozen(cfg.repositories[0]));
  });

  test('"appliance" is accepted as an alias of "gateway"; giving both is an error', () => {
    const cfg = load('appliance: "kloudless.example.com:22"\nssh_key: k\n');
    assert.deepEqual(cfg.gateway, { host: 'kloudless.example.com', port: 22 });
    assert.match(
      refused('appliance: "a:22"\ngateway: "b:22"\nssh_key: k\n'),
      /appliance: "appliance" is another name for "gateway": give only one of them/,
    );
  });

  test('gateway without a port uses 2222; a missing gateway is named', () => {
    assert.equal(load('gateway: gw.example.com\nssh_key: k\n').gateway.port, 2222);
    assert.match(refused('ssh_key: k\n'), /gateway: is required/);
    assert.match(
      refused('gateway: "gw:99999"\nssh_key: k\n'),
      /gateway: "gw:99999" is not a gateway address/,
    );
  });

  test('tenant, fingerprint, state_dir and tuning keys', () => {
    const cfg = load(
      [
        'gateway: "127.0.0.1:2222"',
        'tenant: acme',
        'ssh_key: ./keys/id',
        'gateway_fingerprint: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"',
        'state_dir: /var/lib/tether',
        'keepalive_interval: 2s',
        'keepalive_count_max: 2',
        'reconnect: { min_delay: 100ms, max_delay: 2s }',
        'dial_timeout: 3s',
      ].join('\n'),
    );
    assert.equal(cfg.tenant, 'acme');
    assert.equal(cfg.sshKey, '/etc/tether/keys/id');
    assert.equal(cfg.gatewayFingerprint, 'SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU');
    assert.equal(cfg.stateDir, '/var/lib/tether');
    assert.equal(cfg.keepaliveInterval, 2000);
    assert.equal(cfg.keepaliveCountMax, 2);
    assert.deepEqual(cfg.reconnect, { minDelay: 100, maxDelay: 2000 });
    assert.equal(cfg.dialTimeout, 3000);
  });

  test('drain_timeout: 5 s unless set, 0 allowed, at most an hour, a duration', () => {
    assert.equal(load('gateway: g\nssh_key: k\n').drainTimeout, 5000);
    assert.equal(load('gateway: g\nssh_key: k\ndrain_timeout: 0\n').drainTimeout, 0);
    assert.equal(load('gateway: g\nssh_key: k\ndrain_timeout: 2m\n').drainTimeout, 120_000);
    assert.equal(load('gateway: g\nssh_key: k\ndrain_timeout: 1h\n').drainTimeout, 3_600_000);
    assert.match(
      refused('gateway: g\nssh_key: k\ndrain_timeout: 2h\n'),
      /drain_timeout: at most 1 hour \(use e\.g\. "5s", "2m", or 0 to cut open connections at once\)/,
    );
    assert.match(
      refused('gateway: g\nssh_key: k\ndrain_timeout: soon\n'),
      /drain_timeout: "soon" is not a duration \(use e\.g\. "500ms", "60s", "8h"\)/,
    );
    assert.match(
      refused('gateway: g\nssh_key: k\ndrain_timeout: -5s\n'),
      /drain_timeout: "-5s" is not a duration/,
    );
  });

  test('TETHER_STATE_DIR is used when the file names no state_dir', () => {
    assert.equal(load('gateway: g\nssh_key: k\n', { TETHER_STATE_DIR: '/var/lib/x' }).stateDir, '/var/lib/x');
  });

  test(`\${ENV} is expanded in values; unset variables are errors`, () => {
    const text = `gateway: "\${GW}"\nssh_key: k\n`;
    assert.equal(load(text, { GW: 'gw.example:2200' }).gateway.port, 2200);
    assert.match(refused(text), /gateway: environment variable GW is not set/);
  });

  test('YAML syntax errors give line and column', () => {
    const msg = refused('gateway: "gw:2222"\nssh_key: k\nrepositories:\n  g:\n    r: "smb://a"\n   x: 1\n');
    assert.match(
      msg,
      /^\/etc\/tether\/connect\.yaml: YAML syntax error at line 6, column \d+: All mapping items/,
    );
    assert.match(
      refused('gateway: "gw:2222\nssh_key: k\n'),
      /YAML syntax error at line \d+, column \d+: Missing closing "quote/,
    );
  });

  test('unknown keys are errors, at the top and in nested mappings', () => {
    assert.match(refused('gateway: g\nssh_key: k\nrepos: {}\n'), /connect\.yaml: repos: unknown key/);
    assert.match(refused('gateway: g\nssh_key: k\nreconnect: { min: 1s }\n'), /reconnect\.min: unknown key/);
  });

  test('every repository error names the group and the repository, and all are listed', () => {
    const msg = refused(
      [
        'gateway: g',
        'ssh_key: k',
        'repositories:',
        '  example_group:',
        '    example_webdav: "webdav://webdav.example.com:80/"',
        '    example_ftp: "ftp://files:21"',
        '    example_db: "tcp://db.internal"',
        '    example_big: "tcp://db:65536"',
      ].join('\n'),
    );
    assert.match(
      msg,
      /repositories\.example_group\.example_webdav: webdav needs a scheme: webdav\+http:\/\/ or webdav\+https:\/\//,
    );
    assert.match(msg, /repositories\.example_group\.example_ftp: unknown service "ftp"/);
    assert.match(msg, /repositories\.example_group\.example_db: tcp needs a port: tcp:\/\/db\.internal:port/);
    assert.match(msg, /repositories\.example_group\.example_big: port 65536 is out of range \(1-65535\)/);
  });

  test('duplicate repository label: the same key twice in a group', () => {
    const msg = refused(
      'gateway: g\nssh_key: k\nrepositories:\n  docs:\n    wiki: "http://a"\n    wiki: "http://b"\n',
    );
    assert.match(
      msg,
      /repositories\.docs\.wiki: duplicate repository label docs\/wiki \(line 6; first defined on line 5\)/,
    );
  });

  test('duplicate repository label: names that differ only in case', () => {
    const msg = refused(
      'gateway: g\nssh_key: k\nrepositories:\n  docs:\n    Wiki: "http://a"\n    wiki: "http://b"\n',
    );
    assert.match(msg, /repositories\.docs\.wiki: duplicate repository label docs\/wiki \(same as docs\/Wiki/);
  });

  test('bad group and repository names; a group that is not a mapping', () => {
    assert.match(
      refused('gateway: g\nssh_key: k\nrepositories:\n  "my group":\n    r: "http://a"\n'),
      /repositories\.my group: invalid group name/,
    );
    assert.match(
      refused('gateway: g\nssh_key: k\nrepositories:\n  g:\n    "a.b": "http://a"\n'),
      /repositories\.g\.a\.b: invalid repository name/,
    );
    assert.match(
      refused('gateway: g\nssh_key: k\nrepositories:\n  g: "http://a"\n'),
      /repositories\.g: must be a mapping: repository name → URI/,
    );
  });

  test('empty repositories and empty groups are fine', () => {
    assert.equal(load('gateway: g\nssh_key: k\nrepositories:\n').repositories.length, 0);
    assert.equal(load('gateway: g\nssh_key: k\nrepositories:\n  g:\n').repositories.length, 0);
  });

  test('bad tenant and fingerprint values', () => {
    assert.match(refused('gateway: g\nssh_key: k\ntenant: "Acme Corp"\n'), /tenant: use 1-63 characters/);
    assert.match(
      refused('gateway: g\nssh_key: k\ngateway_fingerprint: "abc"\n'),
      /gateway_fingerprint: use the SHA256/,
    );
  });

  test('metrics_listen: host:port, ":port" is loopback, port 0 allowed; bad values name the key', () => {
    assert.equal(load('gateway: g\nssh_key: k\n').metricsListen, undefined);
    assert.deepEqual(load('gateway: g\nssh_key: k\nmetrics_listen: "127.0.0.1:9464"\n').metricsListen, {
      host: '127.0.0.1',
      port: 9464,
    });
    assert.deepEqual(load('gateway: g\nssh_key: k\nmetrics_listen: ":0"\n').metricsListen, {
      host: '127.0.0.1',
      port: 0,
    });
    assert.deepEqual(load('gateway: g\nssh_key: k\nmetrics_listen: "[::1]:9464"\n').metricsListen, {
      host: '::1',
      port: 9464,
    });
    assert.deepEqual(load('gateway: g\nssh_key: k\nmetrics_listen: "0.0.0.0:9464"\n').metricsListen, {
      host: '0.0.0.0',
      port: 9464,
    });
    const form = 'use "host:port", e.g. "127.0.0.1:9464"; port 0 picks a free one';
    assert.equal(
      refused('gateway: g\nssh_key: k\nmetrics_listen: nonsense\n'),
      `${FILE}: metrics_listen: "nonsense" is not a listen address (${form})`,
    );
    assert.equal(
      refused('gateway: g\nssh_key: k\nmetrics_listen: 9464\n'),
      `${FILE}: metrics_listen: 9464 is not a listen address (${form})`,
    );
    assert.equal(
      refused('gateway: g\nssh_key: k\nmetrics_listen: "127.0.0.1:70000"\n'),
      `${FILE}: metrics_listen: port 70000 is out of range (0-65535)`,
    );
    assert.match(
      refused('gateway: g\nssh_key: k\nmetrics_listen: "http://127.0.0.1:9464/metrics"\n'),
      /metrics_listen: "http:\/\/127\.0\.0\.1:9464\/metrics" is not a listen address/,
    );
    const shown = redactedConfig(load('gateway: g\nssh_key: k\nmetrics_listen: "[::1]:9464"\n'));
    assert.equal(shown.metrics_listen, '[::1]:9464');
  });

  test('the top level must be a mapping', () => {
    assert.match(refused('- a\n- b\n'), /the top level must be a mapping/);
  });

  test('redactedConfig hides query strings and shows effective values', () => {
    const cfg = load('gateway: g\nssh_key: k\nrepositories:\n  g:\n    r: "http://h/p?token=abc"\n');
    const shown = JSON.stringify(redactedConfig(cfg));
    assert.doesNotMatch(shown, /abc/);
    assert.match(shown, /"g:2222"/);
  });

  describe('files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-connect-'));
    after(() => rmSync(dir, { recursive: true, force: true }));

    test('a missing config file says so and how to make one', () => {
      assert.throws(
        () => loadConnectConfig(join(dir, 'nope.yaml')),
        (e: unknown) =>
          isTetherError(e, 'CONFIG_UNREADABLE') &&
          /nope\.yaml: cannot read config: file not found \(create one with "tether connector init"\)/.test(
            e.message,
          ),
      );
    });

    test('relative ssh_key is relative to the file', () => {
      const f = join(dir, 'connect.yaml');
      writeFileSync(f, 'gateway: g\nssh_key: ./connect_key\n');
      const cfg = loadConnectConfig(f, {});
      assert.equal(cfg.sshKey, join(dir, 'connect_key'));
      assert.equal(cfg.stateDir, join(dir, '.tether-connector'));
    });
  });
});
