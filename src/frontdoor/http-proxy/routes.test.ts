import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { httpProxySchema } from '../../config/http-proxy.js';
import { hostOf, prefixMatches, RouteTable, upstreamPath } from './routes.js';

const none = { type: 'none' };

function table(routes: Array<Record<string, unknown>>) {
  const cfg = httpProxySchema.parse({ routes: routes.map((r) => ({ auth: none, ...r })) });
  return { t: RouteTable.fromConfig(cfg.routes), cfg };
}

describe('http-proxy routes', () => {
  it('reads the host name from a Host header', () => {
    assert.equal(hostOf('Registry.Example.com:8443'), 'registry.example.com');
    assert.equal(hostOf('registry.example.com.'), 'registry.example.com');
    assert.equal(hostOf('[::1]:8443'), '::1');
    assert.equal(hostOf(undefined), '');
  });

  it('matches path prefixes on segment boundaries', () => {
    assert.ok(prefixMatches('/', '/anything'));
    assert.ok(prefixMatches('/v2', '/v2'));
    assert.ok(prefixMatches('/v2', '/v2/acme/app/manifests/1'));
    assert.ok(!prefixMatches('/v2', '/v2x'));
    assert.ok(prefixMatches('/api/', '/api/x'));
    assert.ok(!prefixMatches('/api/', '/api'));
  });

  it('prefers an exact host, then a wildcard, then no host; then the longest prefix', () => {
    const { t } = table([
      { name: 'any', to: 'http://a:1' },
      { name: 'any-api', path_prefix: '/api', to: 'http://a:2' },
      { name: 'wild', host: '*.example.com', to: 'http://a:3' },
      { name: 'exact', host: 'registry.example.com', to: 'http://a:4' },
      { name: 'exact-v2', host: 'registry.example.com', path_prefix: '/v2', to: 'http://a:5' },
    ]);
    assert.equal(t.match('registry.example.com', '/v2/x')?.name, 'exact-v2');
    assert.equal(t.match('registry.example.com', '/other')?.name, 'exact');
    assert.equal(t.match('docs.example.com', '/api/x')?.name, 'wild');
    assert.equal(t.match('a.b.example.com', '/')?.name, 'wild');
    assert.equal(t.match('example.com', '/api/x')?.name, 'any-api');
    assert.equal(t.match('elsewhere', '/x')?.name, 'any');
  });

  it('finds no route when nothing matches', () => {
    const { t } = table([{ host: 'registry.example.com', to: 'http://a:1' }]);
    assert.equal(t.match('other.example.com', '/v2/'), undefined);
  });

  it('builds the upstream path from the base path, the prefix rule and the query', () => {
    const { cfg } = table([
      { path_prefix: '/reg', strip_prefix: true, to: 'http://a:1/base' },
      { path_prefix: '/keep', to: 'http://a:1' },
      { path_prefix: '/slash/', strip_prefix: true, to: 'tenant://acme/grp/web' },
    ]);
    assert.equal(upstreamPath(cfg.routes[0]!, '/reg/v2/x', '?n=1'), '/base/v2/x?n=1');
    assert.equal(upstreamPath(cfg.routes[0]!, '/reg', ''), '/base/');
    assert.equal(upstreamPath(cfg.routes[1]!, '/keep/x', ''), '/keep/x');
    assert.equal(upstreamPath(cfg.routes[2]!, '/slash/x', ''), '/x');
  });
});
