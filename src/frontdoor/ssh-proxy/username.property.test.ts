import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { SSH_MAX_INDEX, SSH_REALM_NAME, SSH_TARGET_NAME } from '../../config/ssh-proxy.js';
import { formatProxyUsername, MAX_USERNAME, parseProxyUsername, USERNAME_PATTERN } from './username.js';

/** Bounded runs: every property test of the project together stays well under 20 s. */
const RUNS = { numRuns: 200 };

/** Any text: control characters, every Unicode plane (the 'binary' unit costs seconds to warm up). */
const anyText = (maxLength: number) =>
  fc.oneof(fc.string({ unit: 'binary-ascii', maxLength }), fc.string({ unit: 'grapheme', maxLength }));

const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });
const realm = fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,31}$/);
const target = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,60}$/);
const index = fc.integer({ min: 0, max: SSH_MAX_INDEX });

/** Username-shaped text: realm, ":", target, "/", index, each sometimes damaged. */
const usernameLike = fc
  .tuple(
    fc.oneof(w(6, realm), w(1, fc.constantFrom('', 'Static', '-x', 'a'.repeat(33), 'é', 'a b'))),
    fc.oneof(w(8, fc.constant(':')), w(1, fc.constantFrom('', '::', '/'))),
    fc.oneof(w(6, target), w(1, fc.constantFrom('', '.x', 'a:b', 'a/b', 'x'.repeat(201), '\u0000'))),
    fc.oneof(w(8, fc.constant('/')), w(1, fc.constantFrom('', '//', ':'))),
    fc.oneof(
      w(6, index.map(String)),
      w(1, fc.constantFrom('', '-1', '00', '01', '10000', '1e3', '0x1', ' 1', '99999999999999999999')),
    ),
  )
  .map((parts) => parts.join(''));

/** A reason goes back to the SSH client: no control characters, bounded. */
function assertSafeReason(reason: string): void {
  assert.ok(reason.length > 0 && reason.length <= 300, `reason length ${reason.length}`);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the point is to find control characters
  assert.doesNotMatch(reason, /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/);
}

describe('SSH front door username parser (properties)', () => {
  test('total: any input gives a route or a safe reason, never an exception', () => {
    fc.assert(
      fc.property(fc.oneof(usernameLike, anyText(300), fc.anything()), (input) => {
        const r = parseProxyUsername(input);
        if (!r.ok) return assertSafeReason(r.reason);
        assert.ok(SSH_REALM_NAME.test(r.value.realm) && SSH_TARGET_NAME.test(r.value.target));
        assert.ok(Number.isInteger(r.value.index) && r.value.index >= 0 && r.value.index <= SSH_MAX_INDEX);
      }),
      RUNS,
    );
  });

  test('the anchored pattern alone decides: accepted exactly when it matches, and the text is canonical', () => {
    let accepted = 0;
    fc.assert(
      fc.property(usernameLike, (input) => {
        const r = parseProxyUsername(input);
        assert.equal(r.ok, input.length <= MAX_USERNAME && USERNAME_PATTERN.test(input), input);
        if (!r.ok) return;
        accepted++;
        assert.equal(formatProxyUsername(r.value), input);
      }),
      RUNS,
    );
    assert.ok(accepted >= RUNS.numRuns / 10, `only ${accepted} of ${RUNS.numRuns} inputs were accepted`);
  });

  test('generated routes round-trip through formatProxyUsername', () => {
    fc.assert(
      fc.property(realm, target, index, (rl, tg, ix) => {
        const u = { realm: rl, target: tg, index: ix };
        assert.deepEqual(parseProxyUsername(formatProxyUsername(u)), { ok: true, value: u });
      }),
      RUNS,
    );
  });

  test('one extra character anywhere from the refused set makes it a refusal', () => {
    fc.assert(
      fc.property(
        realm,
        target,
        index,
        fc.constantFrom(':', '/', ' ', '@', '\n', 'é'),
        fc.nat(),
        (rl, tg, ix, c, at) => {
          const good = formatProxyUsername({ realm: rl, target: tg, index: ix });
          const i = at % (good.length + 1);
          const r = parseProxyUsername(`${good.slice(0, i)}${c}${good.slice(i)}`);
          assert.equal(r.ok, false);
          if (!r.ok) assertSafeReason(r.reason);
        },
      ),
      RUNS,
    );
  });
});
