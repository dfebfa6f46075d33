import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { isValidName, TENANT_ID } from '../../core/ids.js';
import { MAX_AUTHORITY, parseRepoAuthority, repoAddress } from './authority.js';

/** Bounded runs: every property test of the project together stays well under 20 s. */
const RUNS = { numRuns: 200 };

/** Any text: control characters, every Unicode plane (the 'binary' unit costs seconds to warm up). */
const anyText = (maxLength: number) =>
  fc.oneof(fc.string({ unit: 'binary-ascii', maxLength }), fc.string({ unit: 'grapheme', maxLength }));

const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });
const name = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/);
const tenant = fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,62}$/);
const port = fc.option(fc.integer({ min: 1, max: 65535 }), { nil: null });

/** Authority-shaped text: mostly three dotted labels and a port, with every kind of damage. */
const authorityLike = fc
  .tuple(
    fc.oneof(
      w(4, fc.tuple(name, name, fc.oneof(w(3, tenant), w(1, name)))),
      w(
        1,
        fc.array(
          fc.oneof(w(4, name), w(1, fc.constantFrom('', '-x', 'a b', 'é', '[::1]', 'x@y', 'a'.repeat(64)))),
          { minLength: 1, maxLength: 5 },
        ),
      ),
    ),
    fc.oneof(
      w(3, fc.constant('')),
      w(
        3,
        fc.integer({ min: 1, max: 65535 }).map((n) => `:${n}`),
      ),
      w(2, fc.constantFrom(':', ':0', ':65536', ':-1', ':x', '::80', ':080', ':123456')),
    ),
  )
  .map(([labels, p]) => `${labels.join('.')}${p}`);

/** A reason is shown to the remote client: one line, no control characters, bounded. */
function assertSafeReason(reason: string): void {
  assert.ok(reason.length > 0 && reason.length <= MAX_AUTHORITY + 200, `reason length ${reason.length}`);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the point is to find control characters
  assert.doesNotMatch(reason, /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/);
}

describe('CONNECT authority parser (properties)', () => {
  test('total: any input gives a repository or a safe reason, never an exception', () => {
    fc.assert(
      fc.property(fc.oneof(authorityLike, anyText(400), fc.anything()), (input) => {
        const r = parseRepoAuthority(input as string);
        if (!r.ok) return assertSafeReason(r.reason);
        const { repo, group, tenant: t, port: p } = r.value;
        assert.ok(isValidName(repo) && isValidName(group) && TENANT_ID.test(t));
        assert.ok(p === null || (Number.isInteger(p) && p >= 1 && p <= 65535));
      }),
      RUNS,
    );
  });

  test('an accepted authority is exactly its parts: formatting them parses to the same value', () => {
    let accepted = 0;
    fc.assert(
      fc.property(authorityLike, (input) => {
        const r = parseRepoAuthority(input);
        if (!r.ok) return;
        accepted++;
        const colon = input.lastIndexOf(':');
        const host = colon < 0 ? input : input.slice(0, colon);
        // the host part is the three names, only the tenant lower-cased; a port is a number
        assert.equal(
          repoAddress(r.value),
          host.replace(/[^.]+$/, (t) => t.toLowerCase()),
        );
        assert.equal(r.value.port, colon < 0 ? null : Number(input.slice(colon + 1)));
        const text = `${repoAddress(r.value)}${r.value.port === null ? '' : `:${r.value.port}`}`;
        assert.deepEqual(parseRepoAuthority(text), r);
      }),
      RUNS,
    );
    assert.ok(accepted >= RUNS.numRuns / 10, `only ${accepted} of ${RUNS.numRuns} inputs were accepted`);
  });

  test('generated repositories round-trip; the tenant is matched without case', () => {
    fc.assert(
      fc.property(name, name, tenant, fc.boolean(), port, (repo, group, t, upper, p) => {
        const input = `${repo}.${group}.${upper ? t.toUpperCase() : t}${p === null ? '' : `:${p}`}`;
        assert.deepEqual(parseRepoAuthority(input), { ok: true, value: { repo, group, tenant: t, port: p } });
      }),
      RUNS,
    );
  });

  test('user information, IP literals, white space and over-long input are always refused', () => {
    fc.assert(
      fc.property(
        name,
        name,
        tenant,
        fc.constantFrom('@', ' ', '\t', '\r\n', '\u0000', 'é'),
        fc.nat(),
        (repo, group, t, bad, at) => {
          const good = `${repo}.${group}.${t}:443`;
          const i = at % good.length;
          const r = parseRepoAuthority(`${good.slice(0, i)}${bad}${good.slice(i)}`);
          assert.equal(r.ok, false);
          if (!r.ok) assertSafeReason(r.reason);
          assert.equal(parseRepoAuthority(`[::1]:${i + 1}`).ok, false);
          assert.equal(parseRepoAuthority(`${good}${'x'.repeat(MAX_AUTHORITY)}`).ok, false);
        },
      ),
      RUNS,
    );
  });
});
