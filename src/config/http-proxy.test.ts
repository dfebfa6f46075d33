import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gatewayConfigFrom } from './gateway.js';

function load(http_proxy: unknown) {
  return gatewayConfigFrom({ http_proxy }, 'gateway.yaml', {});
}

function problems(http_proxy: unknown): string {
  try {
    load(http_proxy);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('expected a config error');
}

const verifyStatic = { type: 'static', file: '/etc/tether/tokens' };

describe('http_proxy config', () => {
  it('reads the Kloudless-style registry route with defaults filled in', () => {
    const c = load({
      listen: '0.0.0.0:8443',
      routes: [
        {
          host: 'Docker.Example.com',
          to: 'http://127.0.0.1:5000',
          auth: {
            type: 'basic-token',
            verify: {
              type: 'remote',
              url: 'https://api.example.com/meta/licenses',
              timeout: '3s',
              scope_field: 'objects.repository',
            },
          },
          read_only: true,
          docker_registry: true,
          upstream_auth: {
            type: 'basic',
            username: 'AWS',
            command: 'aws ecr get-login-password',
            refresh: '8h',
          },
        },
      ],
    }).http_proxy!;
    assert.deepEqual(c.listen, { host: '0.0.0.0', port: 8443 });
    assert.equal(c.max_header_bytes, 16_384);
    const r = c.routes[0]!;
    assert.equal(r.host, 'docker.example.com');
    assert.equal(r.path_prefix, '/');
    assert.deepEqual(r.to, {
      kind: 'url',
      protocol: 'http:',
      hostname: '127.0.0.1',
      port: 5000,
      host: '127.0.0.1:5000',
      basePath: '',
      text: 'http://127.0.0.1:5000',
    });
    assert.equal(r.auth.cache_ttl, 60_000);
    assert.equal(r.auth.failure_ttl, 5_000);
    assert.deepEqual(r.auth.verify, {
      type: 'remote',
      url: 'https://api.example.com/meta/licenses',
      method: 'GET',
      send: 'bearer',
      timeout: 3_000,
      scope_field: 'objects.repository',
    });
    assert.deepEqual(r.upstream_auth, {
      type: 'basic',
      username: 'AWS',
      source: {
        kind: 'command',
        argv: ['/bin/sh', '-c', 'aws ecr get-login-password'],
        refresh: 8 * 3_600_000,
        retries: 3,
        retry_delay: 5_000,
        timeout: 60_000,
      },
    });
  });

  it('reads tenant targets, file and header credentials', () => {
    const c = load({
      routes: [
        { path_prefix: '/wiki', to: 'tenant://acme/intranet/wiki', auth: { type: 'group-key' } },
        {
          path_prefix: '/api',
          to: 'https://api.internal:8443/base/',
          auth: { type: 'bearer', verify: verifyStatic },
          upstream_auth: { type: 'header', name: 'X-Api-Key', value_file: '/run/key' },
        },
      ],
    }).http_proxy!;
    assert.deepEqual(c.routes[0]!.to, {
      kind: 'tenant',
      tenant: 'acme',
      group: 'intranet',
      repo: 'wiki',
      label: 'intranet/wiki',
      text: 'tenant://acme/intranet/wiki',
    });
    assert.equal(c.routes[1]!.to.kind === 'url' && c.routes[1]!.to.basePath, '/base');
    assert.deepEqual(c.routes[1]!.upstream_auth, {
      type: 'header',
      name: 'x-api-key',
      source: { kind: 'file', path: '/run/key' },
    });
  });

  it('names every bad key', () => {
    assert.match(problems({}), /http_proxy\.routes: is required/);
    assert.match(problems({ routes: [] }), /add at least one route/);
    assert.match(problems({ routes: [{ to: 'http://a:1' }] }), /routes\[0\]\.auth: is required/);
    assert.match(
      problems({ routes: [{ to: 'ftp://a', auth: { type: 'none' } }] }),
      /routes\[0\]\.to: "ftp:\/\/a": the scheme must be tenant:\/\/, http:\/\/ or https:\/\//,
    );
    assert.match(
      problems({ routes: [{ to: 'tenant://acme/only-group', auth: { type: 'none' } }] }),
      /use "tenant:\/\/<tenant>\/<group>\/<repo>"/,
    );
    assert.match(
      problems({ routes: [{ to: 'http://u:p@a:1', auth: { type: 'none' } }] }),
      /credentials do not belong in the URL; use upstream_auth/,
    );
    assert.match(
      problems({ routes: [{ to: 'http://a:1', auth: { type: 'basic-token' } }] }),
      /routes\[0\]\.auth\.verify: is required for basic-token/,
    );
    assert.match(
      problems({ routes: [{ to: 'http://a:1', auth: { type: 'none', verify: verifyStatic } }] }),
      /verify: does not apply to none/,
    );
    assert.match(
      problems({ routes: [{ to: 'http://a:1', auth: { type: 'group-key' } }] }),
      /auth\.type: group-key needs a tenant:\/\/ target/,
    );
    assert.match(
      problems({
        routes: [{ to: 'http://a:1', auth: { type: 'bearer', verify: { type: 'remote', url: 'nope' } } }],
      }),
      /verify\.url: must be an http/,
    );
    assert.match(
      problems({ routes: [{ to: 'http://a:1', auth: { type: 'none' }, path_prefix: 'v2' }] }),
      /path_prefix: must start with "\/"/,
    );
    assert.match(
      problems({ routes: [{ to: 'http://a:1', auth: { type: 'none' }, host: 'a.com:443' }] }),
      /host: use a host name/,
    );
    assert.match(
      problems({ routes: [{ to: 'http://a:1', auth: { type: 'none' }, colour: 'red' }] }),
      /routes\[0\]\.colour: unknown key/,
    );
    assert.match(
      problems({
        routes: [
          { to: 'http://a:1', auth: { type: 'none' }, upstream_auth: { type: 'basic', username: 'u' } },
        ],
      }),
      /upstream_auth: give exactly one of password, password_file or command/,
    );
    assert.match(
      problems({
        routes: [
          {
            to: 'http://a:1',
            auth: { type: 'none' },
            upstream_auth: { type: 'bearer', token: 't', token_file: '/f' },
          },
        ],
      }),
      /give exactly one of token, token_file or command/,
    );
    assert.match(
      problems({
        routes: [
          {
            to: 'http://a:1',
            auth: { type: 'none' },
            upstream_auth: { type: 'bearer', token: 't', refresh: '8h' },
          },
        ],
      }),
      /upstream_auth\.refresh: only applies with command/,
    );
    assert.match(
      problems({
        routes: [
          {
            to: 'http://a:1',
            auth: { type: 'none' },
            upstream_auth: { type: 'header', name: 'Host', value: 'x' },
          },
        ],
      }),
      /this header cannot carry a credential/,
    );
    assert.match(
      problems({
        routes: [
          { to: 'http://a:1', auth: { type: 'none' } },
          { to: 'http://a:2', auth: { type: 'none' } },
        ],
      }),
      /routes\[1\]: same host and path_prefix as routes\[0\]/,
    );
    assert.match(
      problems({ routes: [{ to: 'http://a:1', auth: { type: 'none', cache_ttl: 'soon' } }] }),
      /cache_ttl: "soon" is not a duration/,
    );
  });
});
