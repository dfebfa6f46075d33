import assert from 'node:assert/strict';
import { test } from 'node:test';
import { configProblem } from '../../test/helpers/core.js';
import { gatewayConfigFrom } from './gateway.js';

const load = (doc: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) =>
  gatewayConfigFrom(doc, 'gateway.yaml', env);

const problem = (doc: Record<string, unknown>) =>
  configProblem(() => load(doc), `${JSON.stringify(doc)} accepted`);

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

test('workers with a postgres store and in a cluster: accepted (each member runs its own workers)', () => {
  assert.equal(load({ workers: 2, store: 'postgres://u@db/tether' }).workers, 2);
  const member = load({
    workers: 'auto',
    store: 'postgres://u@db/tether',
    cluster: { node_id: 'gw1', advertise: '10.0.0.1' },
  });
  assert.equal(member.workers, 'auto');
  assert.equal(member.cluster?.node_id, 'gw1');
  // a cluster still needs the shared store, workers or not
  assert.match(
    problem({ workers: 2, cluster: { node_id: 'gw1', advertise: '10.0.0.1' } }),
    /a cluster needs a postgres store/,
  );
});

test('worker_accept: "primary" by default, "os" accepted; anything else is refused naming both', () => {
  assert.equal(load({}).worker_accept, 'primary');
  assert.equal(load({ workers: 2, worker_accept: 'os' }).worker_accept, 'os');
  for (const bad of ['OS', 'kernel', '', 1, null, true, ['os']])
    assert.match(
      problem({ workers: 2, worker_accept: bad }),
      /gateway\.yaml: worker_accept: use "primary" \(the default\) or "os"/,
      JSON.stringify(bad),
    );
});
