import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FakeClock, onPostgresToo, tempStore } from '../../test/helpers/core.js';
import { isTetherError } from '../errors/index.js';
import { silentLogger } from '../log/index.js';
import type { Store } from '../store/types.js';
import { type TenantChange, TenantEvents } from './events.js';
import { MAX_STATES_PER_REPO, ManagedRepoService } from './managed-repos.js';
import { RefusalLog } from './refusals.js';

const now = '2026-03-01T00:00:00.000Z';

/** Proposals and connector answers through the service, against both stores (migration 0005). */
function contract(name: string, open: () => Promise<Store>) {
  describe(`managed repositories (${name})`, () => {
    const build = async () => {
      const store = await open();
      await store.insertTenant({ id: 'acme', quota: 20, created_at: now, updated_at: now });
      await store.insertTenant({ id: 'beta', quota: 20, created_at: now, updated_at: now });
      const clock = new FakeClock();
      const log = silentLogger();
      const events = new TenantEvents();
      const seen: TenantChange[] = [];
      events.on((c) => seen.push(c));
      const svc = new ManagedRepoService(store, clock, log, events, new RefusalLog(log, clock), (uri) =>
        uri.startsWith('smb://') || uri.startsWith('webdav+') ? undefined : 'unknown service',
      );
      return { store, svc, seen, clock };
    };
    const who = { fingerprint: 'SHA256:abc', hostname: 'filer' };

    test('propose, answer, replace, remove; states follow the URI; tenants stay apart', async () => {
      const { store, svc, seen } = await build();
      const a = await svc.add('acme', 'files/share', 'smb://10.0.0.5:445');
      assert.equal(a.created, true);
      assert.equal(a.repo.state, 'proposed');
      assert.deepEqual(seen.at(-1), { kind: 'managed', tenant: 'acme' });
      await svc.report('acme', who, {
        label: 'files/share',
        uri: 'smb://10.0.0.5:445',
        state: 'serving',
        reason: null,
      });
      await svc.report(
        'acme',
        { fingerprint: 'SHA256:def', hostname: null },
        {
          label: 'files/share',
          uri: 'smb://10.0.0.5:445',
          state: 'refused',
          reason: '10.0.0.5:445 is outside managed.allow: no rule allows the service smb',
        },
      );
      let [v] = await svc.list('acme');
      assert.equal(v!.state, 'serving', 'served by one connector is serving');
      assert.deepEqual(v!.connectors.map((c) => `${c.hostname} ${c.state}`).sort(), [
        'filer serving',
        'null refused',
      ]);
      // a report on a label or URI not proposed is not stored
      await svc.report('acme', who, { label: 'files/other', uri: 'smb://x', state: 'serving', reason: null });
      await svc.report('acme', who, {
        label: 'files/share',
        uri: 'smb://10.9.9.9:445',
        state: 'serving',
        reason: null,
      });
      assert.equal((await store.listManagedStates('acme')).length, 2);
      // replacing the URI drops the answers about the old one
      const b = await svc.add('acme', 'files/share', 'smb://10.0.0.6:445');
      assert.equal(b.created, false);
      [v] = await svc.list('acme');
      assert.equal(v!.uri, 'smb://10.0.0.6:445');
      assert.equal(v!.state, 'proposed');
      assert.deepEqual(await svc.list('beta'), []);
      await svc.remove('acme', 'files/share');
      assert.deepEqual(await svc.list('acme'), []);
      assert.deepEqual(await store.listManagedStates('acme'), []);
      await store.close();
    });

    test('bad input: label, URI, unknown tenant, unknown proposal', async () => {
      const { store, svc } = await build();
      const code = async (p: Promise<unknown>) => {
        try {
          await p;
          return 'ok';
        } catch (e) {
          return isTetherError(e) ? `${e.code}: ${e.message}` : String(e);
        }
      };
      assert.match(
        await code(svc.add('acme', 'nogroup', 'smb://x')),
        /^BAD_REQUEST: invalid repository "nogroup": use <group>\/<repo>/,
      );
      assert.match(
        await code(svc.add('acme', 'g/r', 'ftp://x')),
        /^BAD_REQUEST: invalid URI for g\/r: unknown service$/,
      );
      assert.match(
        await code(svc.add('acme', 'g/r', `smb://${'a'.repeat(3000)}`)),
        /^BAD_REQUEST: the URI is longer than 2048 characters$/,
      );
      assert.match(await code(svc.add('ghost', 'g/r', 'smb://x')), /^TENANT_NOT_FOUND/);
      assert.match(
        await code(svc.remove('acme', 'g/none')),
        /^MANAGED_NOT_FOUND: tenant acme has no managed repository "g\/none"$/,
      );
      assert.deepEqual(await store.listManagedRepos('acme'), []);
      await store.close();
    });

    test('forwards.max_managed bounds the proposals of one tenant; replacing one still works', async () => {
      const { store } = await build();
      const clock = new FakeClock();
      const log = silentLogger();
      const svc = new ManagedRepoService(
        store,
        clock,
        log,
        new TenantEvents(),
        new RefusalLog(log, clock),
        () => undefined,
        2,
      );
      await svc.add('acme', 'g/a', 'smb://a');
      await svc.add('acme', 'g/b', 'smb://b');
      await assert.rejects(svc.add('acme', 'g/c', 'smb://c'), (e: unknown) => {
        assert.ok(isTetherError(e));
        assert.equal(e.code, 'MANAGED_LIMIT');
        assert.equal(e.status, 409);
        assert.equal(
          e.message,
          'tenant acme already has 2 managed repositories (at most 2, forwards.max_managed)',
        );
        return true;
      });
      assert.equal((await svc.add('acme', 'g/b', 'smb://b2')).created, false);
      assert.equal((await svc.add('beta', 'g/c', 'smb://c')).created, true, 'another tenant is unharmed');
      await store.close();
    });

    test('answers are kept for the newest connectors only; removing the tenant removes everything', async () => {
      const { store, svc, clock } = await build();
      await svc.add('acme', 'files/share', 'smb://10.0.0.5:445');
      for (let i = 0; i < MAX_STATES_PER_REPO + 5; i++) {
        clock.advance(1000);
        await svc.report(
          'acme',
          { fingerprint: `SHA256:k${i}`, hostname: `h${i}` },
          {
            label: 'files/share',
            uri: 'smb://10.0.0.5:445',
            state: 'serving',
            reason: null,
          },
        );
      }
      const states = await store.listManagedStates('acme');
      assert.equal(states.length, MAX_STATES_PER_REPO);
      assert.ok(!states.some((s) => s.hostname === 'h0'), 'the oldest answer went');
      assert.equal(await store.deleteTenant('acme'), true);
      assert.deepEqual(await store.listManagedRepos('acme'), []);
      assert.deepEqual(await store.listManagedStates('acme'), []);
      await store.close();
    });
  });
}

contract('sqlite', tempStore);

await onPostgresToo('managed repositories', contract);
