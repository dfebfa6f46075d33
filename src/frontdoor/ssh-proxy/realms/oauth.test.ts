import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { silentLogger } from '../../../log/index.js';
import { OAuthRealm } from './oauth.js';

type Call = { url: string; method: string; headers: Record<string, string>; body: string };

function fakeFetch(answers: Array<(c: Call) => Response | Promise<Response>>) {
  const calls: Call[] = [];
  const f = (async (url: string | URL, init?: RequestInit) => {
    const c: Call = {
      url: String(url),
      method: init?.method ?? 'GET',
      headers: Object.fromEntries(Object.entries((init?.headers ?? {}) as Record<string, string>)),
      body: String(init?.body ?? ''),
    };
    calls.push(c);
    const answer = answers[calls.length - 1];
    if (!answer) throw new Error('unexpected call');
    return answer(c);
  }) as typeof fetch;
  return { f, calls };
}

const json = (status: number, v: unknown) =>
  new Response(JSON.stringify(v), { status, headers: { 'content-type': 'application/json' } });

const base = {
  type: 'oauth' as const,
  token_url: 'https://idp.example/token',
  client_id: 'ssh proxy',
  client_secret: 's3cr:t',
  client_auth: 'basic' as const,
  access_check_url: 'https://cc.example/apps/{target}/ssh/{index}',
  timeout: 1_000,
  targets: {},
};
const attempt = {
  realm: 'cf',
  target: 'app.1',
  index: 3,
  secret: 'the-code',
  source: { address: '127.0.0.1', port: 1 },
};
const route = {
  host: 'h',
  port: 2222,
  user: 'vcap',
  password: 'pw',
  host_fingerprint: 'SHA256:T9mDZBKINmc2W/WWUYdPCI+2Vr/ZuHeseCEiKRxvqsg',
};

describe('OAuthRealm', () => {
  test('exchanges the code with HTTP Basic client auth, then asks the access check with the bearer token', async () => {
    const { f, calls } = fakeFetch([
      () => json(200, { access_token: 'tok' }),
      () => json(200, { allow: true, user: 'alice', route }),
    ]);
    const realm = new OAuthRealm('cf', { ...base, redirect_uri: 'https://login/cb' }, 'x', {
      log: silentLogger(),
      fetch: f,
    });
    const d = await realm.login(attempt);
    assert.ok(d.ok);
    assert.equal(d.route.name, 'cf:app.1/3');
    assert.equal(d.route.address, 'h:2222');
    assert.equal(d.route.password, 'pw');
    assert.equal(d.principal, 'alice');
    const [token, check] = calls as [Call, Call];
    assert.equal(token.method, 'POST');
    assert.equal(
      token.headers.authorization,
      `Basic ${Buffer.from('ssh%20proxy:s3cr%3At').toString('base64')}`,
    );
    assert.deepEqual(Object.fromEntries(new URLSearchParams(token.body)), {
      grant_type: 'authorization_code',
      code: 'the-code',
      redirect_uri: 'https://login/cb',
    });
    assert.equal(check.url, 'https://cc.example/apps/app.1/ssh/3');
    assert.equal(check.headers.authorization, 'Bearer tok');
  });

  test('client_auth: body puts the client id and secret in the form', async () => {
    const { f, calls } = fakeFetch([
      () => json(200, { access_token: 'tok' }),
      () => json(200, { allow: false }),
    ]);
    const realm = new OAuthRealm('cf', { ...base, client_auth: 'body' }, 'x', {
      log: silentLogger(),
      fetch: f,
    });
    const d = await realm.login(attempt);
    assert.equal(d.ok, false);
    assert.equal(calls[0]!.headers.authorization, undefined);
    const form = new URLSearchParams(calls[0]!.body);
    assert.equal(form.get('client_id'), 'ssh proxy');
    assert.equal(form.get('client_secret'), 's3cr:t');
  });

  test('refusals: rejected code, token endpoint down, bad routes, no route', async () => {
    const cases: Array<[Array<(c: Call) => Response>, RegExp, boolean]> = [
      [[() => json(400, { error: 'invalid_grant' })], /authorization code was not accepted/, false],
      [[() => json(503, {})], /token endpoint answered 503/, true],
      [[() => json(200, { token_type: 'bearer' })], /gave no access token/, true],
      [
        [() => json(200, { access_token: 't' }), () => json(500, {})],
        /denied \(the access check answered 500\)/,
        true,
      ],
      [[() => json(200, { access_token: 't' }), () => json(200, { allow: 'yes' })], /no usable answer/, true],
      [
        [() => json(200, { access_token: 't' }), () => json(200, { allow: false, reason: 'no\u0007pe' })],
        /denied: no\?pe$/,
        true,
      ],
      [
        [
          () => json(200, { access_token: 't' }),
          () => json(200, { allow: true, route: { host: 'h', user: 'u' } }),
        ],
        /invalid route/,
        true,
      ],
      [
        [
          () => json(200, { access_token: 't' }),
          () => json(200, { allow: true, route: { ...route, private_key_file: '/etc/shadow' } }),
        ],
        /./,
        true,
      ],
      [
        [() => json(200, { access_token: 't' }), () => json(200, { allow: true })],
        /no route to it is known/,
        true,
      ],
    ];
    for (const [answers, re, final] of cases) {
      const { f } = fakeFetch(answers);
      const realm = new OAuthRealm('cf', base, 'x', { log: silentLogger(), fetch: f });
      const d = await realm.login(attempt);
      if (d.ok) {
        // A route that names a key file is read as a password route: the file is never read.
        assert.equal(d.route.privateKey, undefined);
        continue;
      }
      assert.match(d.message, re);
      assert.equal(d.final, final, d.message);
    }
  });
});
