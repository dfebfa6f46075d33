import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { tempDir, waitFor } from '../../test/helpers/util.js';
import { type ManagedPolicy, parseManagedPolicy } from '../config/managed-policy.js';
import { silentLogger } from '../log/index.js';
import type { ManagedReportMessage } from '../tunnel/control-protocol.js';
import { MANAGED_FILE, ManagedRepos } from './managed.js';

const policyOf = (raw: unknown): ManagedPolicy | null => parseManagedPolicy(raw, []);
const allow = (ports: string) => policyOf({ allow: [{ cidr: '10.0.0.0/24', ports, services: ['smb'] }] });

function setup(o: { policy: ManagedPolicy | null; local?: string[]; dir?: string }) {
  const dir = o.dir ?? tempDir('tether-managed-unit-');
  const sent: ManagedReportMessage[] = [];
  let changes = 0;
  const state = { policy: o.policy, local: new Set(o.local ?? []) };
  const m = new ManagedRepos({
    stateDir: dir,
    log: silentLogger(),
    policy: () => state.policy,
    localLabels: () => state.local,
    changed: () => {
      changes++;
    },
    send: (r) => sent.push(r),
    lookup: async () => {
      throw Object.assign(new Error('no DNS in this test'), { code: 'ENOTFOUND' });
    },
  });
  const last = (label: string) => sent.filter((r) => r.label === label).at(-1);
  const settled = (label: string) => waitFor(() => last(label), { what: `a report on ${label}` });
  return { dir, m, sent, state, last, settled, changes: () => changes };
}

describe('managed repositories on the connector', () => {
  test('accepted ones are remembered; after a restart only those that still pass come back', async () => {
    const a = setup({ policy: allow('445,139') });
    a.m.onMessage({ type: 'propose', label: 'f/a', uri: 'smb://10.0.0.5:445' });
    a.m.onMessage({ type: 'propose', label: 'f/b', uri: 'smb://10.0.0.6:139' });
    a.m.onMessage({ type: 'propose', label: 'f/c', uri: 'smb://10.0.1.6:445' });
    await a.settled('f/a');
    await a.settled('f/b');
    assert.equal((await a.settled('f/c')).state, 'refused');
    const saved = JSON.parse(readFileSync(join(a.dir, MANAGED_FILE), 'utf8')) as { entries: unknown[] };
    assert.deepEqual(saved.entries, [
      { label: 'f/a', uri: 'smb://10.0.0.5:445' },
      { label: 'f/b', uri: 'smb://10.0.0.6:139' },
    ]);
    // restarted with a narrower policy (port 139 no longer allowed)
    const b = setup({ policy: allow('445'), dir: a.dir });
    b.m.restore();
    assert.deepEqual(
      b.m.serving().map((r) => r.label),
      ['f/a'],
    );
    assert.equal(b.m.status()[0]!.source, 'state dir');
    // and with managed off: nothing
    const c = setup({ policy: null, dir: a.dir });
    c.m.restore();
    assert.deepEqual(c.m.serving(), []);
  });

  test('a connector that never had managed entries writes no file', () => {
    const a = setup({ policy: null });
    a.m.restore();
    a.m.sessionStarted();
    a.m.onMessage({ type: 'proposals-done' });
    assert.equal(existsSync(join(a.dir, MANAGED_FILE)), false);
  });

  test('reload: narrowed withdraws, widened serves again, a refused one is checked again', async () => {
    const t = setup({ policy: allow('445') });
    t.m.onMessage({ type: 'propose', label: 'f/a', uri: 'smb://10.0.0.5:445' });
    t.m.onMessage({ type: 'propose', label: 'f/b', uri: 'smb://10.0.0.5:139' });
    assert.equal((await t.settled('f/a')).state, 'serving');
    assert.equal((await t.settled('f/b')).state, 'refused');
    t.state.policy = allow('139');
    t.m.recheck('connect.yaml reloaded');
    assert.equal(t.last('f/a')?.state, 'withdrawn');
    assert.match(
      String(t.last('f/a')?.reason),
      /^connect\.yaml reloaded: 10\.0\.0\.5:445 is outside managed\.allow: no rule allows port 445 for smb$/,
    );
    await waitFor(() => t.last('f/b')?.state === 'serving', { what: 'f/b served once allowed' });
    t.state.policy = allow('139,445');
    t.m.recheck('connect.yaml reloaded');
    await waitFor(() => t.last('f/a')?.state === 'serving', { what: 'f/a served again' });
    // a local entry takes the label: shadowed; gone again: served
    t.state.local.add('f/a');
    t.m.recheck('connect.yaml reloaded');
    assert.equal(t.last('f/a')?.state, 'shadowed');
    t.state.local.delete('f/a');
    t.m.recheck('connect.yaml reloaded');
    await waitFor(() => t.last('f/a')?.state === 'serving', { what: 'f/a served after the local one went' });
  });

  test('proposals-done drops what a batch no longer names; unpropose removes', async () => {
    const t = setup({ policy: allow('445') });
    t.m.sessionStarted();
    t.m.onMessage({ type: 'propose', label: 'f/a', uri: 'smb://10.0.0.5:445' });
    t.m.onMessage({ type: 'propose', label: 'f/b', uri: 'smb://10.0.0.6:445' });
    await t.settled('f/b');
    t.m.onMessage({ type: 'proposals-done' });
    t.m.onMessage({ type: 'propose', label: 'f/b', uri: 'smb://10.0.0.6:445' });
    t.m.onMessage({ type: 'proposals-done' });
    assert.deepEqual(
      t.m.serving().map((r) => r.label),
      ['f/b'],
    );
    t.m.onMessage({ type: 'unpropose', label: 'f/b' });
    assert.deepEqual(t.m.serving(), []);
    assert.equal(t.m.onMessage({ type: 'welcome' }), false, 'other messages are not ours');
  });

  test('a name that cannot be resolved is refused with the reason', async () => {
    const t = setup({ policy: allow('445') });
    t.m.onMessage({ type: 'propose', label: 'f/n', uri: 'smb://filer.lan:445' });
    assert.equal((await t.settled('f/n')).reason, 'filer.lan:445: cannot resolve filer.lan: ENOTFOUND');
  });

  test('a state file that is not JSON is ignored, nothing is served from it', () => {
    const dir = tempDir('tether-managed-unit-');
    writeFileSync(join(dir, MANAGED_FILE), '{not json');
    const t = setup({ policy: allow('445'), dir });
    t.m.restore();
    assert.deepEqual(t.m.serving(), []);
  });
});
