import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { formatTarget, parseRepositoryUri, type RepositoryTarget, SERVICE_NAMES, SERVICES } from './uri.js';

/** Bounded runs: every property test of the project together stays well under 20 s. */
const RUNS = { numRuns: 200 };

/** Checks what every accepted target must satisfy, whatever the input was. */
function assertWellFormed(t: RepositoryTarget): void {
  const spec = SERVICES[t.service];
  assert.ok(spec, `known service ${t.service}`);
  if (spec.schemes.length === 0) assert.equal(t.scheme, null);
  else assert.ok(t.scheme !== null && spec.schemes.includes(t.scheme), `scheme ${t.scheme}`);
  assert.ok(Number.isInteger(t.port) && t.port >= 1 && t.port <= 65535, `port ${t.port}`);
  assert.ok(t.host.length > 0 && t.host === t.host.toLowerCase(), `host ${t.host}`);
  assert.doesNotMatch(t.host, /[\s@/?#[\]]/);
  if (t.path !== null) assert.ok(t.path.startsWith('/') && !/\s/.test(t.path), `path ${t.path}`);
}

const hostName = fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,20}(\.[a-z0-9][a-z0-9-]{0,10}){0,3}$/);
const host = fc.oneof(
  hostName.map((h) => ({ text: h, host: h })),
  hostName.map((h) => ({ text: h.toUpperCase(), host: h })),
  fc.ipV4().map((h) => ({ text: h, host: h })),
  fc.ipV6().map((h) => ({ text: `[${h}]`, host: h.toLowerCase() })),
);
const path = fc.option(fc.stringMatching(/^\/[A-Za-z0-9._~%/+=&;,!$'()*-]{0,40}$/), { nil: null });

/** Any text: control characters, every Unicode plane (the 'binary' unit costs seconds to warm up). */
const anyText = (maxLength: number) =>
  fc.oneof(fc.string({ unit: 'binary-ascii', maxLength }), fc.string({ unit: 'grapheme', maxLength }));

const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });

/** URI-shaped text from URI-ish pieces, weighted so the parser's accept paths are reached often. */
const uriLike = fc
  .tuple(
    fc.oneof(w(4, fc.constantFrom(...SERVICE_NAMES)), w(1, fc.stringMatching(/^[A-Za-z][A-Za-z0-9]{0,6}$/))),
    fc.oneof(
      w(4, fc.constant('')),
      w(4, fc.constantFrom('+http', '+https', '+HTTP')),
      w(1, fc.constantFrom('+ftp', '+')),
    ),
    fc.oneof(w(8, fc.constant('://')), w(1, fc.constantFrom(':/', '//', ':///'))),
    fc.oneof(
      w(
        6,
        host.map((h) => h.text),
      ),
      w(1, fc.string({ maxLength: 12 })),
    ),
    fc.oneof(
      w(3, fc.constant('')),
      w(
        3,
        fc.integer({ min: 1, max: 65535 }).map((n) => `:${n}`),
      ),
      w(2, fc.constantFrom(':', ':0', ':65536', ':99999', ':-1', ':8o', ':080')),
    ),
    fc.oneof(
      w(3, fc.constant('')),
      w(
        3,
        path.map((p) => p ?? ''),
      ),
      w(1, fc.string({ maxLength: 8 })),
    ),
    fc.oneof(w(6, fc.constant('')), w(1, fc.constantFrom(' ', '@x', '\t', '?q', '#f'))),
  )
  .map((parts) => parts.join(''));

describe('repository URI parser (properties)', () => {
  test('total: any value gives a target or a message, never an exception', () => {
    fc.assert(
      fc.property(fc.oneof(anyText(100), uriLike, fc.anything()), (v) => {
        const r = parseRepositoryUri(v);
        if (r.ok) assertWellFormed(r.target);
        else assert.ok(typeof r.message === 'string' && r.message.length > 0);
      }),
      RUNS,
    );
  });

  test('canonical: an accepted URI and its formatted form parse to the same target', () => {
    let accepted = 0;
    fc.assert(
      fc.property(uriLike, (text) => {
        const r = parseRepositoryUri(text);
        if (!r.ok) return;
        accepted++;
        assertWellFormed(r.target);
        const again = parseRepositoryUri(formatTarget(r.target));
        assert.ok(again.ok, `${formatTarget(r.target)} is accepted`);
        assert.deepEqual(again.target, r.target);
      }),
      RUNS,
    );
    // the generator must reach the accept path often enough for the property to mean something
    assert.ok(accepted >= RUNS.numRuns / 10, `only ${accepted} of ${RUNS.numRuns} inputs were accepted`);
  });

  test('generated targets round-trip, with the default port filled in when omitted', () => {
    const service = fc.constantFrom(...SERVICE_NAMES);
    fc.assert(
      fc.property(
        service,
        fc.boolean(),
        host,
        fc.option(fc.integer({ min: 1, max: 65535 }), { nil: null }),
        path,
        (svc, https, h, port, p) => {
          const spec = SERVICES[svc]!;
          const scheme = spec.schemes.length > 0 ? (https ? 'https' : 'http') : null;
          const explicit = port ?? (spec.defaultPort === undefined ? 1 + (h.text.length % 65535) : null);
          const uri = `${svc}${scheme ? `+${scheme}` : ''}://${h.text}${explicit === null ? '' : `:${explicit}`}${p ?? ''}`;
          const r = parseRepositoryUri(uri);
          assert.ok(r.ok, `${uri}: ${r.ok ? '' : r.message}`);
          const defaultPort =
            typeof spec.defaultPort === 'number' ? spec.defaultPort : spec.defaultPort?.[scheme ?? ''];
          assert.deepEqual(r.target, {
            service: svc,
            scheme,
            host: h.host,
            port: explicit ?? defaultPort,
            path: p,
          });
        },
      ),
      RUNS,
    );
  });

  test('credentials in the authority and white space anywhere are always refused', () => {
    fc.assert(
      fc.property(
        hostName,
        fc.stringMatching(/^[A-Za-z0-9:._-]{0,12}$/),
        fc.constantFrom(' ', '\t', '\n', '\u00a0', '\u2028'),
        fc.nat(20),
        (h, user, ws, at) => {
          const withUser = parseRepositoryUri(`smb://${user}@${h}:445/share`);
          assert.equal(withUser.ok, false);
          const text = `smb://${h}:445/share`;
          const i = Math.min(at, text.length - 1);
          // white space inside (not at the ends, which are trimmed)
          const spaced = parseRepositoryUri(`${text.slice(0, i + 1)}${ws}${text.slice(i + 1)}x`);
          assert.equal(spaced.ok, false);
        },
      ),
      RUNS,
    );
  });
});
