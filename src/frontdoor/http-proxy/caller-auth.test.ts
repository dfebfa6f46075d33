import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseAuthorization, RouteAuthenticator } from './caller-auth.js';
import type { CallerCredential, Verdict, Verifier } from './verifiers/types.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

class Recorder implements Verifier {
  seen: CallerCredential[] = [];
  async verify(c: CallerCredential): Promise<Verdict> {
    this.seen.push(c);
    return c.token === 'good'
      ? { ok: true, subject: c.username ?? 'bearer', scopes: ['acme/app'] }
      : { ok: false, reason: 'no' };
  }
}

const cfg = (type: 'basic-token' | 'bearer' | 'group-key' | 'none') => ({
  type,
  cache_ttl: 60_000,
  failure_ttl: 5_000,
});

describe('http-proxy caller authentication', () => {
  it('parses Basic and Bearer headers', () => {
    assert.deepEqual(parseAuthorization(`Basic ${b64('a@b.c:to:ken')}`), {
      scheme: 'basic',
      username: 'a@b.c',
      password: 'to:ken',
    });
    assert.deepEqual(parseAuthorization('bearer abc.def'), { scheme: 'bearer', token: 'abc.def' });
    assert.equal(parseAuthorization(`Basic ${b64('nocolon')}`), 'malformed');
    assert.equal(parseAuthorization('Basic !!!'), 'malformed');
    assert.equal(
      parseAuthorization(`Basic ${b64('bot:tok\r\nX-Evil: 1')}`),
      'malformed',
      'control characters in the credential',
    );
    assert.deepEqual(parseAuthorization('Digest x'), { scheme: 'other' });
    assert.equal(parseAuthorization(undefined), undefined);
  });

  it('basic-token: e-mail and API token go to the verifier', async () => {
    const v = new Recorder();
    const a = new RouteAuthenticator(cfg('basic-token'), v, 'Docker Registry');
    assert.equal(a.challenge, 'Basic realm="Docker Registry"');
    assert.deepEqual(await a.authenticate(`Basic ${b64('alice@example.com:good')}`), {
      ok: true,
      subject: 'alice@example.com',
      scopes: ['acme/app'],
      user: 'alice@example.com',
    });
    assert.deepEqual(v.seen, [{ username: 'alice@example.com', token: 'good' }]);
    assert.deepEqual(await a.authenticate(undefined), {
      ok: false,
      message: 'authentication required',
      presented: false,
    });
    assert.deepEqual(await a.authenticate(`Basic ${b64('alice@example.com:bad')}`), {
      ok: false,
      message: 'invalid credentials',
      presented: true,
      user: 'alice@example.com',
    });
    assert.equal((await a.authenticate(`Basic ${b64(':good')}`)).ok, false);
    assert.equal((await a.authenticate('Bearer good')).ok, false);
  });

  it('bearer: only the token', async () => {
    const v = new Recorder();
    const a = new RouteAuthenticator({ ...cfg('bearer'), realm: 'api' }, v, 'tether');
    assert.equal(a.challenge, 'Bearer realm="api"');
    assert.equal((await a.authenticate('Bearer good')).ok, true);
    assert.deepEqual(v.seen, [{ token: 'good' }]);
    assert.equal((await a.authenticate(`Basic ${b64('x:good')}`)).ok, false);
  });

  it('group-key: Basic tenant:key or Bearer key', async () => {
    const v = new Recorder();
    const a = new RouteAuthenticator(cfg('group-key'), v, 'tether');
    assert.equal((await a.authenticate(`Basic ${b64('acme:good')}`)).ok, true);
    assert.equal((await a.authenticate('Bearer good')).ok, true);
    assert.deepEqual(v.seen, [{ username: 'acme', token: 'good' }, { token: 'good' }]);
  });

  it('none: anyone', async () => {
    const a = new RouteAuthenticator(cfg('none'), undefined, 'tether');
    assert.equal(a.challenge, undefined);
    assert.deepEqual(await a.authenticate(undefined), { ok: true, subject: null, scopes: null });
  });
});
