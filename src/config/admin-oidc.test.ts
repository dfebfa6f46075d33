import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parse } from 'yaml';
import { fencedBlocks } from '../../test/docs/markdown.js';
import { configProblem } from '../../test/helpers/core.js';
import { isLoopbackHost } from './admin-oidc.js';
import { gatewayConfigFrom } from './gateway.js';

const FILE = 'gateway.yaml';

const base = {
  issuer: 'https://login.example.com/realms/ops',
  client_id: 'tether',
  client_secret: 's3cret',
  roles: { admin: { groups: ['ops-admins'] } },
};

function load(admin: Record<string, unknown>) {
  return gatewayConfigFrom({ admin }, FILE, {});
}

/** The CONFIG_INVALID message of a bad admin section. */
function problem(admin: Record<string, unknown>): string {
  return configProblem(() => load(admin));
}

describe('admin.oidc', () => {
  test('defaults: scopes, groups claim, verified emails, session bounds', () => {
    const cfg = load({ listen: '127.0.0.1:7070', oidc: base });
    const o = cfg.admin.oidc!;
    assert.deepEqual(o.scopes, ['openid', 'email', 'profile']);
    assert.equal(o.groups_claim, 'groups');
    assert.equal(o.require_verified_email, true);
    assert.deepEqual(o.session, {
      idle_timeout: 30 * 60_000,
      lifetime: 8 * 3_600_000,
      max_sessions: 1000,
      max_per_user: 10,
    });
    assert.equal(o.login_timeout, 600_000);
    assert.deepEqual(o.roles.viewer, { groups: [], emails: [] });
    assert.equal(o.redirect_uri, undefined, 'derived from a loopback listener');
    assert.ok(Object.isFrozen(o.roles.admin.groups));
  });

  test('off when absent', () => {
    assert.equal(load({}).admin.oidc, undefined);
  });

  test('emails are compared in lower case; durations parse', () => {
    const o = load({
      oidc: {
        ...base,
        roles: { viewer: { emails: ['Carol@Example.COM'] } },
        session: { idle_timeout: '5m', lifetime: '2h', max_sessions: 5, max_per_user: 2 },
      },
    }).admin.oidc!;
    assert.deepEqual(o.roles.viewer.emails, ['carol@example.com']);
    assert.equal(o.session.idle_timeout, 300_000);
    assert.equal(o.session.lifetime, 7_200_000);
  });

  test('an https redirect_uri lets the admin listener sit anywhere (behind a TLS proxy)', () => {
    const o = load({
      listen: '0.0.0.0:7070',
      oidc: { ...base, redirect_uri: 'https://gw.example.com/auth/callback' },
    }).admin.oidc!;
    assert.equal(o.redirect_uri, 'https://gw.example.com/auth/callback');
  });

  test('bad values are refused with a message naming the key', () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [
        { oidc: { ...base, issuer: 'http://login.example.com' } },
        'admin.oidc.issuer: the issuer must be an https:// URL (plain http only on a loopback address such as 127.0.0.1)',
      ],
      [{ oidc: { ...base, issuer: 'not a url' } }, 'admin.oidc.issuer: "not a url" is not a URL'],
      [
        { oidc: { ...base, issuer: 'https://u:p@login.example.com' } },
        'admin.oidc.issuer: the issuer may not carry credentials or a #fragment',
      ],
      [
        { oidc: { ...base, redirect_uri: 'https://gw.example.com/callback' } },
        "admin.oidc.redirect_uri: the redirect_uri's path must be /auth/callback",
      ],
      [
        { oidc: { ...base, roles: { admin: {}, viewer: {} } } },
        'admin.oidc.roles: name at least one group or email',
      ],
      [
        { oidc: { ...base, roles: { admin: { emails: ['alice'] } } } },
        'admin.oidc.roles.admin.emails[0]: is not an email address',
      ],
      [{ oidc: { ...base, scopes: ['email'] } }, 'admin.oidc.scopes: must include "openid"'],
      [
        { oidc: { ...base, session: { lifetime: '500ms' } } },
        'admin.oidc.session: lifetime and idle_timeout must be at least 1s',
      ],
      [{ oidc: { ...base, session: { max_sessions: 0 } } }, 'admin.oidc.session.max_sessions'],
      [
        { oidc: { ...base, roles: { admin: { groups: ['x'] }, owner: { groups: ['y'] } } } },
        'admin.oidc.roles',
      ],
      [{ oidc: { ...base, allowed_users: ['x'] } }, 'admin.oidc'],
      [
        { oidc: { ...base, client_secret: undefined, token_endpoint_auth_method: 'client_secret_post' } },
        'admin.oidc.client_secret: token_endpoint_auth_method client_secret_post needs a client_secret',
      ],
      [
        { listen: '0.0.0.0:7070', oidc: base },
        "admin.oidc.redirect_uri: set redirect_uri (https://<the dashboard's public host>/auth/callback): it can only be derived when admin.listen is a loopback address",
      ],
      [
        { listen: '0.0.0.0:7070', oidc: { ...base, redirect_uri: 'http://127.0.0.1:7070/auth/callback' } },
        'admin.oidc.redirect_uri: a plain http:// redirect_uri (session cookies without Secure) needs admin.listen on a loopback address',
      ],
      [
        { oidc: { ...base, redirect_uri: 'http://gw.example.com/auth/callback' } },
        'admin.oidc.redirect_uri: the redirect_uri must be an https:// URL',
      ],
    ];
    for (const [admin, expected] of cases) {
      const msg = problem(admin);
      assert.ok(msg.startsWith(`${FILE}: `), msg);
      assert.ok(
        msg.includes(expected),
        `${JSON.stringify(admin)}:\n  got      ${msg}\n  expected ${expected}`,
      );
    }
  });

  test('a loopback issuer may be plain http (a provider on the same machine)', () => {
    const o = load({ oidc: { ...base, issuer: 'http://127.0.0.1:8080/realms/ops' } }).admin.oidc!;
    assert.equal(o.issuer, 'http://127.0.0.1:8080/realms/ops');
  });

  test('loopback hosts', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', 'LOCALHOST'])
      assert.ok(isLoopbackHost(h), h);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', 'example.com', '128.0.0.1', 'localhost.example.com'])
      assert.ok(!isLoopbackHost(h), h);
  });

  test('the example in docs/sso.md is accepted', () => {
    const blocks = fencedBlocks('docs/sso.md').filter((b) => b.info === 'yaml');
    assert.equal(blocks.length, 1);
    const cfg = gatewayConfigFrom(parse(blocks[0]!.body), `sso.md:${blocks[0]!.line}`, {
      TETHER_OIDC_CLIENT_SECRET: 'from-the-environment',
    });
    assert.equal(cfg.admin.oidc?.client_secret, 'from-the-environment');
    assert.deepEqual(cfg.admin.oidc?.roles.admin.emails, ['alice@example.com']);
  });
});
