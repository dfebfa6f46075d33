import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatProxyUsername, MAX_USERNAME, parseProxyUsername, USERNAME_PATTERN } from './username.js';

const ok = (input: string) => {
  const r = parseProxyUsername(input);
  assert.ok(r.ok, `${input}: ${r.ok ? '' : r.reason}`);
  return r.value;
};
const bad = (input: unknown, re: RegExp) => {
  const r = parseProxyUsername(input);
  assert.equal(r.ok, false, `${String(input)} should be refused`);
  if (!r.ok) assert.match(r.reason, re);
};

describe('parseProxyUsername', () => {
  test('accepts realm:target/index', () => {
    assert.deepEqual(ok('static:web-1/0'), { realm: 'static', target: 'web-1', index: 0 });
    assert.deepEqual(ok('cf:4f1a2b3c-0000-4000-8000-00000000abcd/12'), {
      realm: 'cf',
      target: '4f1a2b3c-0000-4000-8000-00000000abcd',
      index: 12,
    });
    assert.deepEqual(ok('tenant:box.grp.acme/0'), { realm: 'tenant', target: 'box.grp.acme', index: 0 });
    assert.deepEqual(ok('a:b/9999'), { realm: 'a', target: 'b', index: 9999 });
    assert.deepEqual(ok('my_realm-2:Web_1.x/7'), { realm: 'my_realm-2', target: 'Web_1.x', index: 7 });
  });

  test('a username without a colon', () => bad('web-1/0', /no ":" between realm and target/));
  test('an empty realm or target', () => {
    bad(':web-1/0', /no realm before ":"/);
    bad('static:/0', /no target between ":" and "\/"/);
  });
  test('a missing index', () => {
    bad('static:web-1', /no "\/<index>" after the target/);
    bad('static:web-1/', /no index after "\/"/);
  });
  test('a negative index', () => bad('static:web-1/-1', /index "-1" is negative/));
  test('a huge index', () => {
    bad('static:web-1/10000', /out of range: use 0 to 9999/);
    bad(`static:web-1/${'9'.repeat(200)}`, /out of range/);
  });
  test('a non-numeric index', () => {
    bad('static:web-1/abc', /index "abc" is not a whole number/);
    bad('static:web-1/1.5', /not a whole number/);
    bad('static:web-1/0x10', /not a whole number/);
    bad('static:web-1/1e3', /not a whole number/);
    bad('static:web-1/+1', /not a whole number/);
  });
  test('leading zeros', () => bad('static:web-1/007', /leading zeros: write it as 7/));
  test('extra slashes', () => {
    bad('static:web-1/0/1', /more than one "\/"/);
    bad('static:a/b/0', /more than one "\/"/);
    bad('static://0', /more than one "\/"/);
  });
  test('extra colons', () => bad('static:web:1/0', /more than one ":"/));
  test('non-ASCII, spaces and control characters', () => {
    bad('static:wéb-1/0', /non-ASCII/);
    bad('static:web-1/٣', /non-ASCII/);
    bad('static:web 1/0', /non-ASCII, space or control/);
    bad('static:web-1/0\n', /control/);
    bad('static:web-1/0\u0000', /control/);
  });
  test('bad realm and target names', () => {
    bad('Static:web-1/0', /invalid realm name "Static"/);
    bad('st@tic:web-1/0', /invalid realm name/);
    bad(`${'r'.repeat(33)}:web-1/0`, /invalid realm name/);
    bad('static:-web/0', /invalid target name "-web"/);
    bad('static:web$1/0', /invalid target name/);
    bad('static:.hidden/0', /invalid target name/);
  });
  test('empty, too long and non-string input', () => {
    bad('', /empty username/);
    bad(undefined, /empty username/);
    bad(42, /empty username/);
    bad(`static:${'a'.repeat(MAX_USERNAME)}/0`, /longer than 256/);
  });
  test('echoed input is shortened', () => {
    const r = parseProxyUsername(`${'x'.repeat(200)}/0`);
    assert.equal(r.ok, false);
    if (!r.ok) assert.ok(r.reason.length < 160, r.reason);
  });

  test('whatever it accepts, the anchored pattern accepts, and formatting round-trips', () => {
    for (const s of ['static:web-1/0', 'tenant:box.grp.acme/0', 'a:b/9999', 'x_y:Z.9/42']) {
      assert.ok(USERNAME_PATTERN.test(s));
      assert.equal(formatProxyUsername(ok(s)), s);
    }
  });
});
