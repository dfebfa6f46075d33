import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isTetherError } from '../errors/index.js';
import { gatewayConfigFrom } from './gateway.js';

const load = (doc: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) =>
  gatewayConfigFrom(doc, 'gateway.yaml', env);

function problem(doc: Record<string, unknown>): string {
  try {
    load(doc);
  } catch (e) {
    assert.ok(isTetherError(e, 'CONFIG_INVALID'), String(e));
    return e.message;
  }
  assert.fail(`${JSON.stringify(doc)} accepted`);
}

test('workers: 1 by default; whole numbers, "auto" and a number from the environment accepted', () => {
  assert.equal(load({}).workers, 1);
  assert.equal(load({ workers: 4 }).workers, 4);
  assert.equal(load({ workers: 'auto' }).workers, 'auto');
  assert.equal(load({ workers: 64 }).workers, 64);
  // "${WORKERS}" in the file expands to a string
  const fromEnv = ['$', '{WORKERS}'].join('');
  assert.equal(load({ workers: fromEnv }, { WORKERS: '3' }).workers, 3);
});

test('workers: zero, negative, fractions, too many and words are refused naming the key and what to use', () => {
  const hint = /gateway\.yaml: workers: use a whole number from 1 to 64, or "auto" \(one per CPU\)/;
  for (const bad of [0, -2, 1.5, 65, 10_000, 'many', '', null, true, '2.5'])
    assert.match(problem({ workers: bad }), hint, JSON.stringify(bad));
});

test('workers above 1 with a postgres store or a cluster: refused with what to do instead; 1 is fine there', () => {
  const msg =
    /workers: several workers run on the embedded store only for now; with a postgres store or a cluster, set workers: 1/;
  assert.match(problem({ workers: 2, store: 'postgres://u@db/tether' }), msg);
  assert.match(
    problem({
      workers: 'auto',
      store: 'postgres://u@db/tether',
      cluster: { node_id: 'gw1', advertise: '10.0.0.1' },
    }),
    msg,
  );
  assert.equal(load({ workers: 1, store: 'postgres://u@db/tether' }).workers, 1);
});
