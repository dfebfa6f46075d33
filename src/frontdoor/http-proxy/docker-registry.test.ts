import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  classifyRegistryPath,
  mountSource,
  registryErrorBody,
  registryErrorCode,
} from './docker-registry.js';

describe('http-proxy docker registry mode', () => {
  it('tells which repository a registry path is about', () => {
    assert.deepEqual(classifyRegistryPath('/v2/'), { kind: 'ping' });
    assert.deepEqual(classifyRegistryPath('/v2/_catalog'), { kind: 'catalog' });
    assert.deepEqual(classifyRegistryPath('/v2/acme/app/manifests/1.0'), {
      kind: 'repository',
      name: 'acme/app',
      op: 'manifests',
    });
    assert.deepEqual(classifyRegistryPath('/v2/a/b/c/blobs/sha256:abc'), {
      kind: 'repository',
      name: 'a/b/c',
      op: 'blobs',
    });
    assert.deepEqual(classifyRegistryPath('/v2/acme/app/blobs/uploads/'), {
      kind: 'repository',
      name: 'acme/app',
      op: 'uploads',
    });
    assert.deepEqual(classifyRegistryPath('/v2/acme/app/blobs/uploads/1234-uuid'), {
      kind: 'repository',
      name: 'acme/app',
      op: 'uploads',
    });
    assert.deepEqual(classifyRegistryPath('/v2/acme/app/tags/list'), {
      kind: 'repository',
      name: 'acme/app',
      op: 'tags',
    });
    // A repository may itself contain "manifests" as a path component.
    assert.deepEqual(classifyRegistryPath('/v2/x/manifests/y/manifests/latest'), {
      kind: 'repository',
      name: 'x/manifests/y',
      op: 'manifests',
    });
    assert.deepEqual(classifyRegistryPath('/v2/Acme/app/manifests/1'), { kind: 'other' });
    assert.deepEqual(classifyRegistryPath('/other'), { kind: 'other' });
  });

  it('reads the source of a cross-repository mount', () => {
    assert.equal(mountSource('?mount=sha256:abc&from=other/repo'), 'other/repo');
    assert.equal(mountSource(''), undefined);
  });

  it('writes errors in the registry JSON form', () => {
    assert.deepEqual(JSON.parse(registryErrorBody(401, 'authentication required')), {
      errors: [{ code: 'UNAUTHORIZED', message: 'authentication required', detail: null }],
    });
    assert.equal(registryErrorCode(403), 'DENIED');
    assert.equal(registryErrorCode(405), 'UNSUPPORTED');
    assert.equal(registryErrorCode(503), 'UNAVAILABLE');
    assert.equal(registryErrorCode(429), 'TOOMANYREQUESTS');
  });
});
