import assert from 'node:assert/strict';
import type { LookupAddress } from 'node:dns';
import { describe, test } from 'node:test';
import { type ManagedPolicy, parseManagedPolicy } from '../config/managed-policy.js';
import type { FieldProblem } from '../errors/index.js';
import { checkTarget, resolveTarget } from './managed-policy.js';

function policy(raw: unknown): ManagedPolicy {
  const problems: FieldProblem[] = [];
  const p = parseManagedPolicy(raw, problems);
  assert.deepEqual(problems, []);
  return p!;
}

function problemsOf(raw: unknown): string[] {
  const problems: FieldProblem[] = [];
  parseManagedPolicy(raw, problems);
  return problems.map((p) => `${p.path}: ${p.message}`);
}

const P = policy({
  allow: [
    { cidr: '10.0.0.0/24', ports: '445,139', services: ['smb'] },
    { host: '*.corp.example', ports: '443', services: ['webdav', 'cmis'] },
  ],
});

const why = (p: ManagedPolicy | null, service: string, host: string, port: number) => {
  const v = checkTarget(p, { service, host, port });
  return v.ok ? 'ok' : v.reason;
};

describe('managed policy: reading connect.yaml', () => {
  test('off, false and absent mean off', () => {
    for (const v of [undefined, null, false, 'off']) assert.equal(parseManagedPolicy(v, []), null);
  });

  test('every mistake is named with its place', () => {
    assert.deepEqual(problemsOf('on'), [
      'managed: use "off" or { allow: [ { cidr | host, ports, services } ] }',
    ]);
    assert.deepEqual(problemsOf({ allow: [] }), [
      'managed.allow: needs a list of rules ({ cidr | host, ports, services }); write "managed: off" to allow nothing',
    ]);
    assert.deepEqual(problemsOf({ allow: [{ ports: '445' }] }), [
      'managed.allow[0]: needs cidr or host (or both): where the operator may point this connector',
    ]);
    assert.deepEqual(problemsOf({ allow: [{ cidr: '10.0.0.1/24', ports: '445' }] }), [
      'managed.allow[0].cidr: "10.0.0.1/24" has host bits set (did you mean 10.0.0.0/24?)',
    ]);
    assert.deepEqual(problemsOf({ allow: [{ cidr: '10.0.0.0/33', ports: '445' }] }), [
      'managed.allow[0].cidr: "10.0.0.0/33": the prefix length must be 0-32',
    ]);
    assert.deepEqual(problemsOf({ allow: [{ host: '10.0.0.5', ports: '445' }] }), [
      'managed.allow[0].host: "10.0.0.5" is an address: put addresses in cidr',
    ]);
    assert.deepEqual(problemsOf({ allow: [{ host: 'a.*.example', ports: '445' }] }), [
      'managed.allow[0].host: "a.*.example" is not a host name or pattern (use "files.corp.example" or "*.corp.example")',
    ]);
    assert.deepEqual(problemsOf({ allow: [{ cidr: '10.0.0.0/8', ports: '70000' }] }), [
      'managed.allow[0].ports: "70000" is out of range (1-65535, low-high) (use e.g. "445,139" or "8000-8100")',
    ]);
    assert.deepEqual(problemsOf({ allow: [{ cidr: '10.0.0.0/8', ports: '445', services: ['ftp'] }] }), [
      'managed.allow[0].services: unknown service "ftp": use smb, webdav, cq5, cmis, alfresco, ssh, http, https, tcp',
    ]);
    assert.deepEqual(problemsOf({ allow: [{ cidr: '10.0.0.0/8', ports: '445', to: 'x' }] }), [
      'managed.allow[0]: unknown key "to" (a rule takes cidr, host, ports, services)',
    ]);
    assert.deepEqual(problemsOf({ allow: [{ cidr: '10.0.0.0/8', ports: '1' }], max_entries: 0 }), [
      'managed.max_entries: must be a whole number from 1 to 1000',
    ]);
  });
});

describe('managed policy: what passes', () => {
  test('inside the rules', () => {
    assert.equal(why(P, 'smb', '10.0.0.5', 445), 'ok');
    assert.equal(why(P, 'smb', '10.0.0.255', 139), 'ok');
    assert.equal(why(P, 'webdav', 'files.corp.example', 443), 'ok');
    assert.equal(why(P, 'cmis', 'a.b.corp.example', 443), 'ok');
  });

  test('just outside each rule: the reason names what is missing', () => {
    assert.equal(
      why(null, 'smb', '10.0.0.5', 445),
      '10.0.0.5:445: managed repositories are off on this connector (connect.yaml has no managed.allow)',
    );
    assert.equal(
      why(P, 'smb', '10.0.1.5', 445),
      '10.0.1.5:445 is outside managed.allow: 10.0.1.5 is in none of the allowed blocks (10.0.0.0/24)',
    );
    assert.equal(
      why(P, 'smb', '10.0.0.5', 446),
      '10.0.0.5:446 is outside managed.allow: no rule allows port 446 for smb',
    );
    assert.equal(
      why(P, 'http', '10.0.0.5', 445),
      '10.0.0.5:445 is outside managed.allow: no rule allows the service http',
    );
    assert.equal(
      why(P, 'webdav', 'corp.example', 443),
      'corp.example:443 is outside managed.allow: the host corp.example matches none of the allowed host patterns (*.corp.example)',
    );
    assert.equal(
      why(P, 'webdav', 'evilcorp.example', 443),
      'evilcorp.example:443 is outside managed.allow: the host evilcorp.example matches none of the allowed host patterns (*.corp.example)',
    );
    assert.match(
      why(P, 'smb', '::ffff:10.0.0.5', 445),
      /::ffff:a00:5 is an IPv6 form of 10\.0\.0\.5; IPv4 blocks do not cover it/,
    );
    assert.match(why(P, 'smb', '::10.0.0.5', 445), /IPv6 form of 10\.0\.0\.5/);
    assert.match(why(P, 'smb', '2002:a00:5::1', 445), /IPv6 form of 10\.0\.0\.5/);
    assert.match(why(P, 'smb', 'fe80::1%eth0', 445), /is not an IP address/);
  });

  test('0.0.0.0 never; loopback and link-local only by a block inside their range', () => {
    const wide = policy({ allow: [{ cidr: ['0.0.0.0/0', '::/0'], ports: '1-65535' }] });
    assert.match(why(wide, 'tcp', '0.0.0.0', 80), /0\.0\.0\.0 is never dialled/);
    assert.match(why(wide, 'tcp', '0.1.2.3', 80), /never dialled/);
    assert.match(why(wide, 'tcp', '224.0.0.1', 80), /never dialled/);
    assert.match(why(wide, 'tcp', '::', 80), /never dialled/);
    assert.match(why(wide, 'tcp', '::ffff:0.0.0.0', 80), /never dialled \(an IPv6 form of 0\.0\.0\.0\)/);
    assert.match(
      why(wide, 'tcp', '127.0.0.1', 80),
      /a loopback address of the connector, allowed only by a block inside 127\.0\.0\.0\/8/,
    );
    assert.match(why(wide, 'tcp', '::1', 80), /the loopback address of the connector/);
    assert.match(why(wide, 'tcp', '::ffff:127.0.0.1', 80), /loopback/);
    assert.match(
      why(wide, 'tcp', '169.254.169.254', 80),
      /a link-local address, allowed only by a block inside 169\.254\.0\.0\/16/,
    );
    assert.match(why(wide, 'tcp', 'fe80::1', 80), /link-local/);
    assert.equal(why(wide, 'tcp', '8.8.8.8', 80), 'ok');
    const lo = policy({
      allow: [
        { cidr: '127.0.0.1/32', ports: '8080' },
        { cidr: '169.254.10.0/24', ports: '80' },
      ],
    });
    assert.equal(why(lo, 'tcp', '127.0.0.1', 8080), 'ok');
    assert.match(why(lo, 'tcp', '127.0.0.2', 8080), /none of the allowed blocks/);
    assert.equal(why(lo, 'http', '169.254.10.9', 80), 'ok');
  });
});

describe('managed policy: names resolved at dial time', () => {
  const lookup =
    (table: Record<string, string[]>) =>
    async (host: string): Promise<LookupAddress[]> => {
      const a = table[host];
      if (!a) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
      return a.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
    };
  const cidrRule = policy({ allow: [{ cidr: '10.0.0.0/24', ports: '445', services: ['smb'] }] });

  test('a name must resolve into the blocks; the address checked is the one dialled', async () => {
    const l = lookup({
      'filer.lan': ['10.0.0.7'],
      'evil.lan': ['10.0.1.7'],
      mixed: ['127.0.0.1', '10.0.0.9'],
    });
    assert.deepEqual(await resolveTarget(cidrRule, { service: 'smb', host: 'filer.lan', port: 445 }, l), {
      ok: true,
      address: '10.0.0.7',
    });
    assert.deepEqual(await resolveTarget(cidrRule, { service: 'smb', host: 'mixed', port: 445 }, l), {
      ok: true,
      address: '10.0.0.9',
    });
    const evil = await resolveTarget(cidrRule, { service: 'smb', host: 'evil.lan', port: 445 }, l);
    assert.deepEqual(evil, {
      ok: false,
      reason:
        'evil.lan:445 is outside managed.allow: evil.lan resolves to 10.0.1.7: 10.0.1.7 is in none of the allowed blocks (10.0.0.0/24)',
    });
    const gone = await resolveTarget(cidrRule, { service: 'smb', host: 'nowhere', port: 445 }, l);
    assert.deepEqual(gone, { ok: false, reason: 'nowhere:445: cannot resolve nowhere: ENOTFOUND' });
  });

  test('a host rule without its own block stays inside the policy’s blocks (no rebinding out)', async () => {
    const p = policy({
      allow: [
        { cidr: '10.0.0.0/24', ports: '445', services: ['smb'] },
        { host: '*.corp.example', ports: '443', services: ['webdav'] },
      ],
    });
    const t = { service: 'webdav', host: 'dav.corp.example', port: 443 };
    assert.deepEqual(await resolveTarget(p, t, lookup({ 'dav.corp.example': ['10.0.0.20'] })), {
      ok: true,
      address: '10.0.0.20',
    });
    const moved = await resolveTarget(p, t, lookup({ 'dav.corp.example': ['192.168.1.1'] }));
    assert.equal(moved.ok, false);
    assert.match(
      (moved as { reason: string }).reason,
      /resolves to 192\.168\.1\.1: 192\.168\.1\.1 is in none of the allowed blocks \(10\.0\.0\.0\/24\)/,
    );
    // a policy of host rules only: any address, but never loopback, link-local or 0.0.0.0
    const hosts = policy({ allow: [{ host: '*.corp.example', ports: '443' }] });
    assert.equal((await resolveTarget(hosts, t, lookup({ 'dav.corp.example': ['192.168.1.1'] }))).ok, true);
    for (const a of ['127.0.0.1', '169.254.169.254', '0.0.0.0', '::1']) {
      const v = await resolveTarget(hosts, t, lookup({ 'dav.corp.example': [a] }));
      assert.equal(v.ok, false, a);
    }
  });
});
