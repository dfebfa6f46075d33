import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { isTetherError } from '../errors/index.js';
import { connectConfigFromText } from './connect.js';
import { SERVICE_NAMES, SERVICES } from './uri.js';

/** Bounded runs: every property test of the project together stays well under 20 s. */
const RUNS = { numRuns: 60 };
const FILE = '/etc/tether/connect.yaml';

/** `${X}` (unset) and `${HOME}` (set): environment references, as users write them. */
const ENV_REFS = ['$' + '{X}', '$' + '{HOME}'] as const;

/** Any text: control characters, every Unicode plane (the 'binary' unit costs seconds to warm up). */
const anyText = (maxLength: number) =>
  fc.oneof(fc.string({ unit: 'binary-ascii', maxLength }), fc.string({ unit: 'grapheme', maxLength }));

const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });

/** Loads text; returns the config or the CONFIG_INVALID error. Anything else fails the property. */
function load(text: string, env: NodeJS.ProcessEnv = {}) {
  try {
    return { ok: true as const, cfg: connectConfigFromText(text, FILE, env) };
  } catch (e) {
    assert.ok(isTetherError(e, 'CONFIG_INVALID'), `expected CONFIG_INVALID, got ${(e as Error)?.stack ?? e}`);
    assert.ok(e.message.startsWith(`${FILE}: `), e.message);
    assert.ok(e.details.length > 0);
    return { ok: false as const, error: e };
  }
}

const name = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_-]{0,20}$/);
const hostName = fc.stringMatching(/^[a-z][a-z0-9-]{0,15}(\.[a-z][a-z0-9-]{0,8}){0,2}$/);
const uri = fc
  .tuple(fc.constantFrom(...SERVICE_NAMES), fc.boolean(), hostName, fc.integer({ min: 1, max: 65535 }))
  .map(([svc, https, h, port]) => {
    const scheme = SERVICES[svc]!.schemes.length > 0 ? (https ? '+https' : '+http') : '';
    return `${svc}${scheme}://${h}:${port}/`;
  });
/** group → repo → URI; labels unique without case, as the loader requires. */
const repositories = fc
  .uniqueArray(fc.tuple(name, name, uri), {
    maxLength: 8,
    selector: ([g, r]) => `${g}/${r}`.toLowerCase(),
  })
  .map((list) => {
    const out: Record<string, Record<string, string>> = {};
    for (const [g, r, u] of list) {
      out[g] ??= {};
      out[g][r] = u;
    }
    return out;
  });

/** A valid connect.yaml document (as an object) and what the loader must make of it. */
const validDoc = fc.record(
  {
    gateway: fc.tuple(hostName, fc.integer({ min: 1, max: 65535 })).map(([h, p]) => `${h}:${p}`),
    ssh_key: fc.constantFrom('connect_key', '/etc/tether/key', 'keys/k1'),
    tenant: fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,20}$/),
    keepalive_interval: fc.constantFrom('2s', '500ms', 15, '1m'),
    keepalive_count_max: fc.integer({ min: 1, max: 100 }),
    dial_timeout: fc.constantFrom('10s', '250ms', 3),
    log_level: fc.constantFrom('trace', 'debug', 'info', 'warn', 'error', 'silent'),
    repositories,
  },
  { requiredKeys: ['gateway', 'ssh_key'] },
);

const KEYS = [
  'gateway',
  'appliance',
  'tenant',
  'ssh_key',
  'gateway_fingerprint',
  'repositories',
  'reconnect',
];
/** Small JSON-ish values (YAML documents of a few hundred bytes keep the runs fast). */
const scalar = fc.oneof(
  fc.string({ maxLength: 10 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constantFrom('127.0.0.1:2222', 'smb://h:445', '5s', ENV_REFS[1]),
);
const value = fc.oneof(
  w(4, scalar),
  w(1, fc.array(scalar, { maxLength: 3 })),
  w(1, fc.dictionary(fc.string({ maxLength: 6 }), scalar, { maxKeys: 3 })),
);
/** Random documents: known and unknown keys with any value, sometimes nested like repositories. */
const randomDoc = fc.dictionary(
  fc.oneof(w(3, fc.constantFrom(...KEYS)), w(1, fc.string({ maxLength: 8 }))),
  fc.oneof(w(3, value), w(1, fc.dictionary(fc.string({ maxLength: 6 }), value, { maxKeys: 3 }))),
  { maxKeys: 6 },
);

/** Edits that break YAML in the ways people do: stray indicators, tabs, cut lines, aliases. */
const edit = fc.tuple(
  fc.nat(),
  fc.nat(8),
  fc.constantFrom(
    '',
    ':',
    ': ',
    '- ',
    '\t',
    '"',
    "'",
    '{',
    '}',
    '[',
    ']',
    '&a ',
    '*a',
    '*b',
    '!!binary ',
    '%',
    '\n  ',
    '\n',
    '#',
    ENV_REFS[0],
    ENV_REFS[1],
    '@',
    '`',
  ),
);
function applyEdits(text: string, edits: Array<[number, number, string]>): string {
  let out = text;
  for (const [at, cut, ins] of edits) {
    const i = at % (out.length + 1);
    out = `${out.slice(0, i)}${ins}${out.slice(i + cut)}`;
  }
  return out;
}

describe('connect.yaml loader (properties)', () => {
  test('aliases: an unresolved alias and an alias bomb are CONFIG_INVALID, not a crash', () => {
    const unresolved = load('gateway: gw:2222\nssh_key: k\ntenant: *nowhere\n');
    assert.ok(!unresolved.ok && /YAML error: Unresolved alias/.test(unresolved.error.message));
    const lines = ['a: &a [x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 12; i++) {
      const [prev, cur] = [String.fromCharCode(96 + i), String.fromCharCode(97 + i)];
      lines.push(`${cur}: &${cur} [${Array(9).fill(`*${prev}`).join(', ')}]`);
    }
    const t0 = Date.now();
    const bomb = load(lines.join('\n'));
    assert.ok(!bomb.ok && /YAML error: aliases expand to too much data/.test(bomb.error.message));
    assert.ok(Date.now() - t0 < 2000, `refused in ${Date.now() - t0} ms`);
  });

  test('a recursive alias (in a sequence, a mapping, or deep inside) is CONFIG_INVALID naming its line', () => {
    for (const [text, line] of [
      ['a: &a [*a]\n', 1],
      ['gateway: gw:2222\nrepositories: &r { g: *r }\n', 2],
      ['gateway: gw:2222\nx: &x\n  y:\n    - z: [1, *x]\n', 4],
    ] as const) {
      const r = load(text);
      assert.ok(!r.ok, text);
      assert.equal(r.error.code, 'CONFIG_INVALID');
      assert.match(
        r.error.message,
        new RegExp(`YAML error at line ${line}, column \\d+: the alias \\*\\w refers`),
      );
    }
  });

  test('valid generated documents load: every repository, resolved paths, frozen', () => {
    fc.assert(
      fc.property(validDoc, (doc) => {
        const r = load(stringify(doc));
        assert.ok(r.ok, r.ok ? '' : r.error.message);
        const { cfg } = r;
        const expected = Object.entries(doc.repositories ?? {}).flatMap(([g, rs]) =>
          Object.entries(rs).map(([n, u]) => [`${g}/${n}`, u]),
        );
        assert.deepEqual(
          cfg.repositories.map((x) => [x.label, x.uri]),
          expected,
        );
        assert.equal(cfg.tenant, doc.tenant);
        assert.ok(cfg.sshKey.startsWith('/'));
        assert.ok(Object.isFrozen(cfg) && Object.isFrozen(cfg.repositories) && Object.isFrozen(cfg.gateway));
      }),
      RUNS,
    );
  });

  test('random documents give a config or CONFIG_INVALID naming the file, never another error', () => {
    fc.assert(
      fc.property(randomDoc, (doc) => {
        load(stringify(doc));
      }),
      RUNS,
    );
  });

  test('random text and damaged valid documents give a config or CONFIG_INVALID, never another error', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          anyText(200),
          fc
            .tuple(validDoc, fc.array(edit, { minLength: 1, maxLength: 4 }))
            .map(([doc, edits]) => applyEdits(stringify(doc), edits)),
        ),
        (text) => {
          load(text, { HOME: '/home/x' });
        },
      ),
      RUNS,
    );
  });

  test('one bad repository is named by group and repository; the rest of the file does not hide it', () => {
    fc.assert(
      fc.property(
        validDoc,
        name,
        name,
        fc.constantFrom(
          'smb://',
          'webdav://h/',
          'tcp://h',
          'ftp://h:21',
          'smb://u:p@h',
          'smb://h:0',
          42,
          null,
        ),
        (doc, g, n, bad) => {
          const repos = structuredClone(doc.repositories ?? {});
          // a fresh group name, so the bad entry never collides with a generated one
          const group = `zz${g}`;
          repos[group] = { [n]: bad as string };
          const r = load(stringify({ ...doc, repositories: repos }));
          assert.equal(r.ok, false);
          if (!r.ok)
            assert.ok(
              r.error.details.some((d) => d.path === `repositories.${group}.${n}`),
              r.error.message,
            );
        },
      ),
      RUNS,
    );
  });

  test('an unknown key at the top level is named', () => {
    fc.assert(
      fc.property(
        validDoc,
        fc.stringMatching(/^[a-z][a-z_]{0,12}$/),
        fc.jsonValue({ maxDepth: 1 }),
        (doc, key, v) => {
          fc.pre(
            ![
              'gateway',
              'appliance',
              'tenant',
              'ssh_key',
              'gateway_fingerprint',
              'repositories',
              'state_dir',
              'keepalive_interval',
              'keepalive_count_max',
              'reconnect',
              'dial_timeout',
              'drain_timeout',
              'log_level',
            ].includes(key),
          );
          const r = load(stringify({ ...doc, [key]: v }));
          assert.equal(r.ok, false);
          if (!r.ok)
            assert.ok(
              r.error.details.some((d) => d.path === key && /unknown key/.test(d.message)),
              r.error.message,
            );
        },
      ),
      RUNS,
    );
  });
});
