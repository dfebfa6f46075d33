import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { isTetherError } from '../errors/index.js';
import { gatewayConfigFrom } from './gateway.js';
import { parseYamlText } from './load.js';

/** Bounded runs: every property test of the project together stays well under 20 s. */
const RUNS = { numRuns: 60 };
const FILE = '/etc/tether/gateway.yaml';
const ENV = { HOME: '/home/x', PORT: '2222' };

/** Any text: control characters, every Unicode plane (the 'binary' unit costs seconds to warm up). */
const anyText = (maxLength: number) =>
  fc.oneof(fc.string({ unit: 'binary-ascii', maxLength }), fc.string({ unit: 'grapheme', maxLength }));

const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });

/** Parses and validates like `tether gateway -c`; returns the config or the CONFIG_INVALID error. */
function load(input: { text: string } | { doc: unknown }) {
  try {
    const raw = 'text' in input ? parseYamlText(input.text, FILE) : input.doc;
    return { ok: true as const, cfg: gatewayConfigFrom(raw, FILE, ENV) };
  } catch (e) {
    assert.ok(isTetherError(e, 'CONFIG_INVALID'), `expected CONFIG_INVALID, got ${(e as Error)?.stack ?? e}`);
    assert.ok(e.message.startsWith(`${FILE}: `), e.message);
    assert.ok(e.details.length > 0);
    return { ok: false as const, error: e };
  }
}

const port = fc.integer({ min: 0, max: 65535 });
const listen = port.map((p) => `127.0.0.1:${p}`);
const dur = fc.oneof(
  fc.integer({ min: 1, max: 3600 }).map((n) => ({ text: `${n}s` as string | number, ms: n * 1000 })),
  fc.integer({ min: 1, max: 999 }).map((n) => ({ text: `${n}ms` as string | number, ms: n })),
  fc.integer({ min: 1, max: 48 }).map((n) => ({ text: `${n}h` as string | number, ms: n * 3_600_000 })),
  fc.integer({ min: 0, max: 600 }).map((n) => ({ text: n as string | number, ms: n * 1000 })),
);
const range = fc
  .tuple(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 0, max: 3000 }))
  .map(([lo, n]) => ({ low: lo, high: Math.min(65535, lo + n) }));

/** A valid gateway.yaml document and the values the loader must produce from it. */
const validDoc = fc
  .record({
    tunnel: listen,
    admin: listen,
    keepalive: dur,
    count: fc.integer({ min: 1, max: 10 }),
    authTimeout: dur,
    maxUnauth: fc.integer({ min: 1, max: 10_000 }),
    throttle: fc.record({ max_failures: fc.integer({ min: 1, max: 1000 }), window: dur, block_for: dur }),
    range,
    quota: fc.integer({ min: 0, max: 3000 }),
    level: fc.constantFrom('trace', 'debug', 'info', 'warn', 'error', 'silent'),
    access: fc.option(fc.record({ listen, max_failures: fc.integer({ min: 1, max: 100 }) }), {
      nil: undefined,
    }),
  })
  .map((v) => ({
    v,
    doc: {
      data_dir: '/var/lib/tether',
      tunnel: {
        listen: v.tunnel,
        keepalive_interval: v.keepalive.text,
        keepalive_count_max: v.count,
        auth_timeout: v.authTimeout.text,
        max_unauthenticated: v.maxUnauth,
        login_throttle: {
          max_failures: v.throttle.max_failures,
          window: v.throttle.window.text,
          block_for: v.throttle.block_for.text,
        },
      },
      admin: { listen: v.admin },
      forwards: { ports: `${v.range.low}-${v.range.high}`, default_quota: v.quota },
      log: { level: v.level },
      ...(v.access ? { access_proxy: v.access } : {}),
    },
  }));

/** What a section may hold: its known keys (so random documents get past the first check). */
const SECTIONS: Record<string, string[]> = {
  tunnel: [
    'listen',
    'tls',
    'websocket',
    'keepalive_interval',
    'keepalive_count_max',
    'auth_timeout',
    'max_unauthenticated',
    'login_throttle',
    'host_key',
  ],
  admin: ['listen', 'token_file'],
  forwards: ['bind', 'ports', 'default_quota', 'lease_ttl'],
  access_proxy: ['listen', 'header_timeout', 'max_failures', 'failure_window', 'verify_upstream_tls'],
  cluster: ['node_id', 'advertise', 'heartbeat', 'dead_after'],
  log: ['level', 'audit'],
  http_proxy: ['listen', 'routes', 'tls'],
  ssh_proxy: ['listen', 'realms', 'host_key'],
};
const scalar = fc.oneof(
  fc.string({ maxLength: 10 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constantFrom(
    '127.0.0.1:0',
    ':2222',
    '[::1]:22',
    '5s',
    '-1s',
    '1-2',
    '65535-1',
    'sqlite',
    'postgres://x',
  ),
  fc.constantFrom(
    'stdout',
    'file:',
    'syslog://',
    'syslog://h:99999',
    'file:///tmp/a',
    '$' + '{PORT}',
    '$' + '{NOPE}',
  ),
);
const value = fc.oneof(w(4, scalar), w(1, fc.array(scalar, { maxLength: 3 })));
const section = (name: string) =>
  fc.oneof(
    w(
      4,
      fc.dictionary(
        fc.oneof(w(4, fc.constantFrom(...SECTIONS[name]!)), w(1, fc.string({ maxLength: 6 }))),
        value,
        { maxKeys: 4 },
      ),
    ),
    w(1, value),
  );
/** Random documents built from the real key vocabulary, with random values and a few stray keys. */
const randomDoc = fc.oneof(
  w(
    6,
    fc.record(
      {
        data_dir: scalar,
        store: scalar,
        ...Object.fromEntries(Object.keys(SECTIONS).map((k) => [k, section(k)])),
        [`x${'y'}`]: scalar,
      },
      { requiredKeys: [] },
    ),
  ),
  w(1, value),
);

describe('gateway.yaml loader (properties)', () => {
  test('valid generated documents load with their values, frozen', () => {
    fc.assert(
      fc.property(validDoc, ({ v, doc }) => {
        const r = load({ text: stringify(doc) });
        assert.ok(r.ok, r.ok ? '' : r.error.message);
        const { cfg } = r;
        assert.deepEqual(cfg.tunnel.listen, { host: '127.0.0.1', port: Number(v.tunnel.split(':')[1]) });
        assert.equal(cfg.tunnel.keepalive_interval, v.keepalive.ms);
        assert.equal(cfg.tunnel.auth_timeout, v.authTimeout.ms);
        assert.equal(cfg.tunnel.max_unauthenticated, v.maxUnauth);
        assert.deepEqual(cfg.tunnel.login_throttle, {
          max_failures: v.throttle.max_failures,
          window: v.throttle.window.ms,
          block_for: v.throttle.block_for.ms,
        });
        assert.deepEqual(cfg.forwards.ports, v.range);
        assert.equal(cfg.forwards.default_quota, v.quota);
        assert.equal(cfg.access_proxy?.max_failures, v.access?.max_failures);
        assert.ok(Object.isFrozen(cfg) && Object.isFrozen(cfg.tunnel) && Object.isFrozen(cfg.forwards.ports));
      }),
      RUNS,
    );
  });

  test('random documents give a config or CONFIG_INVALID naming the file, never another error', () => {
    fc.assert(
      fc.property(randomDoc, (doc) => {
        load({ doc });
        load({ text: stringify(doc) });
      }),
      RUNS,
    );
  });

  test('random text gives a config or CONFIG_INVALID, never another error', () => {
    fc.assert(
      fc.property(anyText(200), (text) => {
        load({ text });
      }),
      RUNS,
    );
  });

  test('an unknown key in any section is named by its path', () => {
    fc.assert(
      fc.property(
        validDoc,
        fc.constantFrom('', 'tunnel', 'admin', 'forwards', 'log', 'tunnel.login_throttle'),
        fc.stringMatching(/^[a-z][a-z_]{0,12}$/),
        value,
        ({ doc }, where, key, v) => {
          const copy = structuredClone(doc) as Record<string, unknown>;
          let target = copy;
          for (const part of where.split('.').filter(Boolean))
            target = target[part] as Record<string, unknown>;
          fc.pre(
            !(key in target) &&
              !(
                where === ''
                  ? Object.keys(SECTIONS).concat('data_dir', 'store')
                  : (SECTIONS[where] ?? ['max_failures', 'window', 'block_for'])
              ).includes(key),
          );
          // an unset ${VAR} is reported before the schema runs; keep this one about the key
          fc.pre(!JSON.stringify(v ?? null).includes('$' + '{'));
          target[key] = v;
          const r = load({ doc: copy });
          assert.equal(r.ok, false);
          const path = where ? `${where}.${key}` : key;
          if (!r.ok)
            assert.ok(
              r.error.details.some((d) => d.path === path && /unknown key/.test(d.message)),
              `${path}: ${r.error.message}`,
            );
        },
      ),
      RUNS,
    );
  });

  test('listen addresses and port ranges out of bounds are refused with the form to use', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 65536, max: 10_000_000 }),
        fc.integer({ min: 1, max: 65535 }),
        (big, lo) => {
          const bad = load({ doc: { tunnel: { listen: `127.0.0.1:${big}` } } });
          assert.ok(!bad.ok && /is not a listen address \(use "host:port"/.test(bad.error.message));
          const inverted = load({ doc: { forwards: { ports: `${lo + 1}-${lo}` } } });
          assert.ok(!inverted.ok && /is not a port range \(use "low-high"/.test(inverted.error.message));
        },
      ),
      RUNS,
    );
  });
});
