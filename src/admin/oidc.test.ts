import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { gatewayConfigFrom } from '../config/gateway.js';
import { decide, Sealer } from './oidc.js';

function oidc(extra: Record<string, unknown>) {
  const cfg = gatewayConfigFrom(
    { admin: { oidc: { issuer: 'https://idp.example.com', client_id: 'tether', ...extra } } },
    'gateway.yaml',
    {},
  );
  return cfg.admin.oidc!;
}

const ROLES = {
  roles: {
    admin: { groups: ['ops-admins'], emails: ['boss@example.com'] },
    viewer: { groups: ['ops'], emails: ['carol@example.com'] },
  },
};

describe('who may sign in, and as what', () => {
  test('roles by group and by verified email; admin wins', () => {
    const o = oidc(ROLES);
    const role = (claims: Record<string, unknown>) => {
      const d = decide(o, { sub: 's1', ...claims });
      return d.ok ? d.user.role : d.why;
    };
    assert.equal(role({ groups: ['ops-admins'] }), 'admin');
    assert.equal(role({ groups: ['ops', 'ops-admins'] }), 'admin');
    assert.equal(role({ groups: ['ops'] }), 'viewer');
    assert.equal(role({ groups: 'ops' }), 'viewer', 'a single group as a string');
    assert.equal(role({ email: 'Boss@Example.com', email_verified: true }), 'admin');
    assert.equal(role({ email: 'carol@example.com', email_verified: 'true' }), 'viewer');
    assert.equal(
      role({ email: 'carol@example.com', email_verified: false }),
      'no role names this user (its email is not verified)',
    );
    assert.equal(role({ email: 'carol@example.com' }), 'no role names this user (its email is not verified)');
    assert.equal(role({ groups: ['OPS'] }), 'no role names this user', 'groups match exactly');
    assert.equal(
      role({ groups: [{ name: 'ops' }, 42, null] }),
      'no role names this user',
      'non-strings ignored',
    );
    assert.equal(role({}), 'no role names this user');
  });

  test('unverified emails match when require_verified_email is off', () => {
    const d = decide(oidc({ ...ROLES, require_verified_email: false }), {
      sub: 's',
      email: 'carol@example.com',
    });
    assert.ok(d.ok && d.user.role === 'viewer');
  });

  test('allowed_groups / allowed_emails are a gate in front of the roles', () => {
    const o = oidc({ ...ROLES, allowed_groups: ['staff'] });
    const a = decide(o, { sub: 's', groups: ['ops-admins'] });
    assert.deepEqual(a.ok ? a.user.role : a.why, 'not in allowed_groups or allowed_emails');
    const b = decide(o, { sub: 's', groups: ['ops-admins', 'staff'] });
    assert.ok(b.ok && b.user.role === 'admin');
    const u = decide(o, { sub: 's', groups: ['ops-admins'], email: 'boss@example.com' });
    assert.equal(
      u.ok ? u.user.role : u.why,
      'not in allowed_groups or allowed_emails (its email is not verified)',
    );
    const c = decide(o, { sub: 's', groups: ['staff'] });
    assert.equal(c.ok ? c.user.role : c.why, 'no role names this user', 'the gate alone gives no role');
  });

  test('a custom groups claim; what the session keeps is bounded', () => {
    const o = oidc({ ...ROLES, groups_claim: 'roles' });
    const d = decide(o, {
      sub: 'x'.repeat(5000),
      roles: ['ops', ...Array.from({ length: 5000 }, (_, i) => `g${i}`), 'y'.repeat(300)],
      name: 'n'.repeat(1000),
    });
    assert.ok(d.ok);
    assert.equal(d.user.subject.length, 256);
    assert.equal(d.user.groups.length, 1000);
    assert.equal(d.user.name?.length, 256);
  });
});

describe('sealed pending sign-ins', () => {
  test('round trip; tampered, foreign, truncated and oversized values are refused', () => {
    const s = new Sealer();
    const v = { state: 'st', nonce: 'n', verifier: 'v', exp: 1 };
    const sealed = s.seal(v);
    assert.deepEqual(s.unseal(sealed), v);
    assert.notEqual(s.seal(v), sealed, 'a fresh IV each time');
    const raw = Buffer.from(sealed, 'base64url');
    raw[raw.length - 1]! ^= 1;
    assert.equal(s.unseal(raw.toString('base64url')), undefined, 'tampered');
    assert.equal(new Sealer().unseal(sealed), undefined, 'another key (a restarted gateway)');
    assert.equal(s.unseal(sealed.slice(0, 20)), undefined);
    assert.equal(s.unseal(''), undefined);
    assert.equal(s.unseal(undefined), undefined);
    assert.equal(s.unseal('A'.repeat(5000)), undefined);
  });
});
