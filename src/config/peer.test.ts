import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isTetherError, type TetherError } from '../errors/index.js';
import { type PeerOptionsInput, parseLogLevel, peerConfigFrom } from './peer.js';

/** "${NAME}" as a config value writes it. */
const ref = (name: string) => `\${${name}}`;

function refused(input: PeerOptionsInput, env: NodeJS.ProcessEnv = {}): TetherError {
  try {
    peerConfigFrom(input, env);
  } catch (e) {
    assert.ok(isTetherError(e, 'PEER_OPTIONS_INVALID'), String(e));
    assert.equal(e.status, 400);
    return e;
  }
  assert.fail('expected the options to be refused');
}

describe('peer options through the config pipeline', () => {
  test('defaults: both ports on every interface, info, no mTLS; deeply frozen', () => {
    const c = peerConfigFrom({}, {});
    assert.deepEqual(c, {
      tunnelBind: { host: '', port: 9090 },
      httpBind: { host: '', port: 9091 },
      logLevel: 'info',
      drainTimeout: 5_000,
    });
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.tunnelBind) && Object.isFrozen(c.httpBind));
  });

  test('flags left undefined by the command line are absent, not unknown; certificate paths are named, not read', () => {
    const c = peerConfigFrom(
      {
        tunnelBind: '127.0.0.1:0',
        httpBind: '[::1]:8080',
        logLevel: 'DEBUG',
        rootCertPath: '/no/such/root.pem',
        serverCertPath: '/no/such/cert.pem',
        serverKeyPath: '/no/such/key.pem',
      },
      {},
    );
    assert.deepEqual(c.tunnelBind, { host: '127.0.0.1', port: 0 });
    assert.deepEqual(c.httpBind, { host: '::1', port: 8080 });
    assert.equal(c.logLevel, 'debug');
    assert.deepEqual(c.tls, {
      rootCertPath: '/no/such/root.pem',
      serverCertPath: '/no/such/cert.pem',
      serverKeyPath: '/no/such/key.pem',
    });
    assert.ok(Object.isFrozen(c.tls));
    assert.equal(peerConfigFrom({ tunnelBind: undefined, rootCertPath: '' }, {}).tls, undefined);
  });

  test(`environment references (${ref('VAR')}) in every value are expanded, as in gateway.yaml and connect.yaml`, () => {
    const c = peerConfigFrom(
      {
        httpBind: `127.0.0.1:${ref('API_PORT')}`,
        rootCertPath: `${ref('CERTS')}/root.pem`,
        serverCertPath: 'c',
        serverKeyPath: 'k',
      },
      { API_PORT: '8181', CERTS: '/etc/tether' },
    );
    assert.deepEqual(c.httpBind, { host: '127.0.0.1', port: 8181 });
    assert.equal(c.tls?.rootCertPath, '/etc/tether/root.pem');
  });

  test('an unset variable is named with the flag that uses it; every such flag in one error', () => {
    const e = refused({ httpBind: `127.0.0.1:${ref('API_PORT')}`, serverKeyPath: `${ref('KEYS')}/peer.key` });
    assert.equal(
      e.message,
      `--http-bind uses ${ref('API_PORT')}, which is not set; --server-key-path uses ${ref('KEYS')}, which is not set`,
    );
    assert.deepEqual(
      e.details.map((d) => d.path),
      ['--http-bind', '--server-key-path'],
    );
  });

  test('every bad value is named by its flag, all of them in one error', () => {
    const e = refused({ tunnelBind: 'nope', httpBind: '127.0.0.1:99999', logLevel: 'loud' });
    assert.equal(
      e.message,
      '--tunnel-bind "nope" has no port (use "host:port"); ' +
        '--http-bind "127.0.0.1:99999": port 99999 is out of range (0-65535); ' +
        '--log-level "loud" is not one of trace, debug, info, warn, error',
    );
    assert.deepEqual(
      e.details.map((d) => d.path),
      ['--tunnel-bind', '--http-bind', '--log-level'],
    );
    assert.equal(refused({ httpBind: '' }).message, '--http-bind is empty (use "host:port")');
    assert.equal(
      refused({ tunnelBind: 'bad host!:22' }).message,
      '--tunnel-bind "bad host!:22": "bad host!" is not a host name or IP address',
    );
  });

  test('--drain-timeout: 5 s unless given; durations and 0 accepted; garbage, negative and over an hour refused by name', () => {
    assert.equal(peerConfigFrom({ drainTimeout: '90s' }, {}).drainTimeout, 90_000);
    assert.equal(peerConfigFrom({ drainTimeout: '0' }, {}).drainTimeout, 0);
    assert.equal(peerConfigFrom({ drainTimeout: '30' }, {}).drainTimeout, 30_000);
    assert.equal(peerConfigFrom({ drainTimeout: '1h' }, {}).drainTimeout, 3_600_000);
    assert.equal(
      refused({ drainTimeout: 'soon' }).message,
      '--drain-timeout "soon" is not a duration (use e.g. "500ms", "60s", "8h")',
    );
    assert.equal(
      refused({ drainTimeout: '-5s' }).message,
      '--drain-timeout "-5s" is not a duration (use e.g. "500ms", "60s", "8h")',
    );
    assert.equal(
      refused({ drainTimeout: '61m' }).message,
      '--drain-timeout must be at most 1 hour (use e.g. "5s", "2m", or 0 to cut open connections at once)',
    );
  });

  test('the certificate flags go together; the error names the missing ones', () => {
    const e = refused({ serverCertPath: 'a', serverKeyPath: 'b' });
    assert.equal(
      e.message,
      '--root-cert-path, --server-cert-path and --server-key-path go together (all three for mTLS, or none): missing --root-cert-path',
    );
    assert.deepEqual(e.details[0]?.path, '--root-cert-path');
    assert.match(
      refused({ rootCertPath: 'a', serverKeyPath: '' }).message,
      /missing --server-cert-path, --server-key-path$/,
    );
  });

  test('an unknown key or a value of the wrong type (a caller of the API, not the command line) is refused by name', () => {
    assert.equal(
      refused({ tunelBind: ':1' } as PeerOptionsInput).message,
      'tunelBind is not an option of tether peer run',
    );
    assert.equal(
      refused({ a: '1', b: '2' } as PeerOptionsInput).message,
      'a, b are not options of tether peer run',
    );
    assert.match(
      refused({ tunnelBind: 9090 } as unknown as PeerOptionsInput).message,
      /^--tunnel-bind .*expected string/,
    );
  });

  test('the log level alone, checked before the logger is built', () => {
    assert.equal(parseLogLevel(undefined), 'info');
    assert.equal(parseLogLevel('Warn'), 'warn');
    assert.throws(() => parseLogLevel('chatty'), {
      code: 'PEER_OPTIONS_INVALID',
      message: '--log-level "chatty" is not one of trace, debug, info, warn, error',
    });
  });
});
