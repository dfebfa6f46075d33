import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseRepoAuthority, repoAddress } from './authority.js';

const ok = (s: string) => {
  const r = parseRepoAuthority(s);
  assert.ok(r.ok, `expected ${JSON.stringify(s)} to parse: ${r.ok ? '' : r.reason}`);
  return r.value;
};
const bad = (s: string, re: RegExp) => {
  const r = parseRepoAuthority(s);
  assert.equal(r.ok, false, `expected ${JSON.stringify(s)} to be refused`);
  if (!r.ok) assert.match(r.reason, re);
};

describe('parseRepoAuthority', () => {
  it('parses <repo>.<group>.<tenant> with any port', () => {
    assert.deepEqual(ok('web.grp.acme:443'), { repo: 'web', group: 'grp', tenant: 'acme', port: 443 });
    assert.deepEqual(ok('ssh.grp.acme:22'), { repo: 'ssh', group: 'grp', tenant: 'acme', port: 22 });
    assert.deepEqual(ok('web.grp.acme:65535').port, 65535);
  });

  it('accepts a host without a port (absolute-form URLs)', () => {
    assert.deepEqual(ok('web.grp.acme'), { repo: 'web', group: 'grp', tenant: 'acme', port: null });
  });

  it('keeps repository and group case, lower-cases the tenant', () => {
    assert.deepEqual(ok('Web.Grp.ACME:80'), { repo: 'Web', group: 'Grp', tenant: 'acme', port: 80 });
  });

  it('accepts names with "_" and "-" and 63-character labels', () => {
    const l = 'a'.repeat(63);
    assert.deepEqual(ok(`${l}.${l}.${l}:1`), { repo: l, group: l, tenant: l, port: 1 });
    assert.deepEqual(ok('my_repo.the-group.t_1'), {
      repo: 'my_repo',
      group: 'the-group',
      tenant: 't_1',
      port: null,
    });
  });

  it('refuses missing parts', () => {
    bad('', /empty authority/);
    bad('web.grp:443', /missing parts/);
    bad('web:443', /missing parts/);
    bad('.grp.acme:443', /empty repository/);
    bad('web..acme:443', /empty group/);
    bad('web.grp.:443', /empty tenant/);
    bad(':443', /missing parts/);
  });

  it('refuses extra dots', () => {
    bad('a.web.grp.acme:443', /too many dots/);
    bad('web.grp.acme.:443', /too many dots/);
    bad('web.grp.acme.example.com', /too many dots/);
  });

  it('refuses over-long labels and authorities', () => {
    bad(`${'a'.repeat(64)}.grp.acme:1`, /repository name longer than 63/);
    bad(`web.${'g'.repeat(64)}.acme:1`, /group name longer than 63/);
    bad(`web.grp.${'t'.repeat(64)}:1`, /tenant name longer than 63/);
    bad(`${'a'.repeat(400)}`, /longer than 300/);
  });

  it('refuses non-ASCII, spaces and control characters', () => {
    bad('wéb.grp.acme:443', /non-ASCII/);
    bad('web.grp.acmé', /non-ASCII/);
    bad('web.grp.acme :443', /non-ASCII/);
    bad('web.grp.acme\r\n:443', /non-ASCII/);
    bad('web.grp.acme\0', /non-ASCII/);
  });

  it('refuses bad ports', () => {
    bad('web.grp.acme:', /invalid port/);
    bad('web.grp.acme:0', /invalid port/);
    bad('web.grp.acme:65536', /invalid port/);
    bad('web.grp.acme:123456', /invalid port/);
    bad('web.grp.acme:http', /invalid port/);
    bad('web.grp.acme:-1', /invalid port/);
    bad('web.grp:acme:443', /too many ":"/);
  });

  it('refuses user information, IP literals and invalid characters in names', () => {
    bad('user@web.grp.acme:443', /user information/);
    bad('[::1]:443', /IP address/);
    bad('127.0.0.1:443', /too many dots/);
    bad('-web.grp.acme:443', /invalid repository name/);
    bad('web.g+p.acme:443', /invalid group name/);
    bad('web.grp.-acme:443', /invalid tenant id/);
    bad('web.grp.ac/me:443', /invalid tenant id/);
  });

  it('formats the address it parses', () => {
    assert.equal(repoAddress(ok('web.grp.acme:443')), 'web.grp.acme');
  });
});
