import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { gatewayConfigFrom } from '../../config/gateway.js';

const target = { host: '10.0.0.5', user: 'vcap', password: 'pw' };
const cfg = (sshProxy: unknown) =>
  gatewayConfigFrom({ data_dir: '/tmp/tether-unit', ssh_proxy: sshProxy }, 'gateway.yaml', {});
const fails = (sshProxy: unknown, re: RegExp) =>
  assert.throws(
    () => cfg(sshProxy),
    (e: Error) => re.test(e.message),
    String(re),
  );

describe('ssh_proxy config', () => {
  test('defaults', () => {
    const c = cfg({ realms: { static: { type: 'static', credential: 'c', targets: { 'web-1': [target] } } } })
      .ssh_proxy!;
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 2022 });
    assert.equal(c.handshake_timeout, 60_000);
    assert.equal(c.idle_timeout, 1_800_000);
    assert.equal(c.max_auth_tries, 3);
    assert.deepEqual(c.login_throttle, { max_failures: 5, window: 900_000, block_for: 900_000 });
    const realm = c.realms.static!;
    assert.equal(realm.type, 'static');
    if (realm.type === 'static') {
      assert.deepEqual(realm.targets['web-1']![0], {
        ...target,
        port: 22,
        insecure_skip_host_key_check: false,
        allow_port_forwarding: false,
      });
    }
  });

  test('every realm type', () => {
    const c = cfg({
      listen: '0.0.0.0:2022',
      host_key: '/etc/tether/ssh_proxy_host_key',
      realms: {
        static: {
          type: 'static',
          credential: 'c',
          targets: {
            'web-1': [{ ...target, host_fingerprint: 'SHA256:T9mDZBKINmc2W/WWUYdPCI+2Vr/ZuHeseCEiKRxvqsg' }],
          },
        },
        cf: {
          type: 'oauth',
          token_url: 'https://uaa.example.com/oauth/token',
          client_id: 'ssh-proxy',
          client_secret: 's',
          access_check_url: 'https://api.example.com/internal/apps/{target}/ssh_access/{index}',
        },
        tenant: {
          type: 'tenant',
          user: 'root',
          private_key: 'x',
          targets: {
            'box.grp.acme': { host_fingerprint: 'MD5:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99' },
          },
        },
      },
    }).ssh_proxy!;
    assert.deepEqual(Object.keys(c.realms).sort(), ['cf', 'static', 'tenant']);
    const cf = c.realms.cf!;
    if (cf.type === 'oauth') {
      assert.equal(cf.timeout, 5_000);
      assert.equal(cf.client_auth, 'basic');
    }
  });

  test('mistakes are named', () => {
    fails({}, /ssh_proxy\.realms: is required/);
    fails({ realms: {} }, /enable at least one realm/);
    fails({ realms: { Bad: { type: 'static', credential: 'c', targets: {} } } }, /realm names use/);
    fails({ realms: { s: { type: 'ldap' } } }, /ssh_proxy\.realms\.s/);
    fails(
      { realms: { s: { type: 'static', credential: 'c', targets: {}, extra: 1 } } },
      /ssh_proxy\.realms\.s\.extra: unknown key/,
    );
    fails(
      { realms: { s: { type: 'static', credential: 'c', targets: { w: [{ host: 'h', user: 'u' }] } } } },
      /give password, private_key or private_key_file/,
    );
    fails(
      {
        realms: {
          s: {
            type: 'static',
            credential: 'c',
            targets: { w: [{ ...target, private_key: 'k', private_key_file: 'f' }] },
          },
        },
      },
      /not both/,
    );
    fails(
      {
        realms: {
          s: { type: 'static', credential: 'c', targets: { w: [{ ...target, host_fingerprint: 'abc' }] } },
        },
      },
      /ssh-keygen -l/,
    );
    fails(
      { realms: { s: { type: 'static', credential: 'c', targets: { 'bad/name': [target] } } } },
      /use 1-200 characters/,
    );
    fails(
      { realms: { s: { type: 'static', credential: 'c', targets: { w: [] } } } },
      /ssh_proxy\.realms\.s\.targets\.w/,
    );
    fails(
      {
        realms: {
          o: {
            type: 'oauth',
            token_url: 'https://t',
            client_id: 'i',
            client_secret: 's',
            access_check_url: 'https://a/check',
          },
        },
      },
      /containing \{target\}/,
    );
    fails(
      {
        realms: {
          o: {
            type: 'oauth',
            token_url: 'ftp://t',
            client_id: 'i',
            client_secret: 's',
            access_check_url: 'https://a/{target}',
          },
        },
      },
      /http/,
    );
    fails(
      { max_auth_tries: 0, realms: { s: { type: 'static', credential: 'c', targets: { w: [target] } } } },
      /max_auth_tries/,
    );
  });
});
