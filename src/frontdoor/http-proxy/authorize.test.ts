import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { authorizeScopes, methodAllowed, scopeAllows } from './authorize.js';

const docker = (path: string, query = '', method = 'GET') => ({
  method,
  path,
  query,
  prefix: '/',
  dockerRegistry: true,
});

describe('http-proxy authorization', () => {
  it('allows only GET and HEAD on read-only routes', () => {
    assert.ok(methodAllowed(true, 'GET'));
    assert.ok(methodAllowed(true, 'HEAD'));
    for (const m of ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) assert.ok(!methodAllowed(true, m), m);
    assert.ok(methodAllowed(false, 'DELETE'));
  });

  it('matches scopes exactly or by glob', () => {
    assert.ok(scopeAllows(['acme/app'], 'acme/app'));
    assert.ok(!scopeAllows(['acme/app'], 'acme/app2'));
    assert.ok(scopeAllows(['acme/*'], 'acme/app'));
    assert.ok(!scopeAllows(['acme/*'], 'acme/app/sub'));
    assert.ok(scopeAllows(['acme/**'], 'acme/app/sub'));
    assert.ok(!scopeAllows(['acme.app'], 'acmexapp'));
  });

  it('passes everything when the verifier listed no scopes', () => {
    assert.deepEqual(authorizeScopes(null, docker('/v2/_catalog')), { ok: true });
  });

  it('limits registry paths to the allowed repository names', () => {
    const scopes = ['acme/app'];
    assert.ok(authorizeScopes(scopes, docker('/v2/')).ok);
    assert.ok(authorizeScopes(scopes, docker('/v2/acme/app/manifests/1.0')).ok);
    assert.ok(authorizeScopes(scopes, docker('/v2/acme/app/blobs/sha256:abc')).ok);
    const denied = authorizeScopes(scopes, docker('/v2/other/thing/manifests/1.0'));
    assert.deepEqual(denied, {
      ok: false,
      status: 403,
      message: 'access to repository other/thing is denied',
    });
    assert.equal(authorizeScopes(scopes, docker('/v2/_catalog')).ok, false);
    assert.equal(authorizeScopes(scopes, docker('/v1/whatever')).ok, false);
    // Mounting a blob from a repository outside the scopes is a read of that repository.
    assert.equal(
      authorizeScopes(
        scopes,
        docker('/v2/acme/app/blobs/uploads/', '?mount=sha256:a&from=other/secret', 'POST'),
      ).ok,
      false,
    );
    assert.ok(
      authorizeScopes(scopes, docker('/v2/acme/app/blobs/uploads/', '?mount=sha256:a&from=acme/app', 'POST'))
        .ok,
    );
  });

  it('limits generic routes to paths under the scopes, below the route prefix', () => {
    const r = (path: string) => ({ method: 'GET', path, query: '', prefix: '/files', dockerRegistry: false });
    assert.ok(authorizeScopes(['reports'], r('/files/reports/2026.pdf')).ok);
    assert.ok(authorizeScopes(['reports'], r('/files/reports')).ok);
    assert.equal(authorizeScopes(['reports'], r('/files/reportsX/a')).ok, false);
    assert.equal(authorizeScopes(['reports'], r('/files')).ok, false);
    assert.ok(authorizeScopes(['team/*'], r('/files/team/a/b')).ok);
  });
});
