import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type ControlSession, openControlSession } from '../helpers/control-session.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { waitFor } from '../helpers/util.js';

interface Listing {
  repositories: Array<{
    label: string;
    uri: string;
    state: string;
    connectors: Array<{ hostname: string | null; state: string; reason: string | null }>;
  }>;
}

/**
 * The gateway's side of managed repositories, spoken by hand on a real control channel: what a
 * connector may send back is checked where it enters, and proposals reach only the connectors of
 * their own tenant that asked for them.
 */
describe('managed repositories: what the gateway takes from a connector', () => {
  let gw: TestGateway;
  let acme: ControlSession;
  let beta: ControlSession;

  before(async () => {
    gw = await startGateway();
    const acmeKey = await gw.addTenant('acme');
    const betaKey = await gw.addTenant('beta');
    const add = await gw.api('POST', '/v1/tenants/acme/managed-repositories', {
      repository: 'files/share',
      uri: 'smb://10.0.0.5:445',
    });
    assert.equal(add.status, 201, JSON.stringify(add.json));
    acme = await openControlSession({ port: gw.sshPort, user: 'acme', keyFile: acmeKey });
    beta = await openControlSession({ port: gw.sshPort, user: 'beta', keyFile: betaKey });
    for (const s of [acme, beta]) {
      s.send({ type: 'hello', version: 1, agent: 'hand', hostname: 'host\u001b[31m' });
      await s.waitMessage((m) => m.type === 'welcome');
    }
  });
  after(async () => {
    acme?.end();
    beta?.end();
    await gw?.stop();
  });

  const listing = async (tenant = 'acme') =>
    (await gw.api('GET', `/v1/tenants/${tenant}/managed-repositories`)).json as Listing;

  test('proposals only after managed-ready, only to the own tenant', async () => {
    await acme.ping();
    assert.equal(acme.messages.filter((m) => m.type === 'propose').length, 0, 'nothing before managed-ready');
    acme.send({ type: 'managed-ready' });
    beta.send({ type: 'managed-ready' });
    const p = await acme.waitMessage((m) => m.type === 'propose');
    assert.deepEqual(p, { type: 'propose', label: 'files/share', uri: 'smb://10.0.0.5:445' });
    await acme.waitMessage((m) => m.type === 'proposals-done');
    await beta.waitMessage((m) => m.type === 'proposals-done');
    assert.equal(beta.messages.filter((m) => m.type === 'propose').length, 0, 'beta gets none of acme’s');
  });

  test('malformed reports are refused with the field named; nothing is stored', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ label: '../x', state: 'serving', uri: 'smb://10.0.0.5:445' }, 'the label must be <group>/<repo>'],
      [
        { label: 'files/share', state: 'pwned', uri: 'smb://10.0.0.5:445' },
        'state must be one of serving, refused, withdrawn, shadowed',
      ],
      [
        { label: 'files/share', state: 'refused', reason: 42, uri: 'smb://10.0.0.5:445' },
        'reason must be text',
      ],
      [{ label: 'files/share', state: 'serving', uri: 'x'.repeat(3000) }, 'uri must be the proposed URI'],
    ];
    for (const [body, why] of cases) {
      acme.send({ type: 'managed', ...body });
      await acme.waitMessage(
        (m) =>
          m.type === 'error' &&
          m.code === 'BAD_MANAGED_REPORT' &&
          m.message === `managed report refused: ${why}`,
        20_000,
        why,
      );
    }
    // well formed but about something not proposed (another label, another URI): ignored
    acme.send({
      type: 'managed',
      label: 'files/other',
      state: 'serving',
      reason: null,
      uri: 'smb://10.0.0.9:445',
    });
    acme.send({
      type: 'managed',
      label: 'files/share',
      state: 'serving',
      reason: null,
      uri: 'smb://10.6.6.6:445',
    });
    beta.send({
      type: 'managed',
      label: 'files/share',
      state: 'serving',
      reason: null,
      uri: 'smb://10.0.0.5:445',
    });
    await acme.ping();
    await beta.ping();
    const l = await listing();
    assert.deepEqual(
      l.repositories.map((r) => `${r.label} ${r.state} ${r.connectors.length}`),
      ['files/share proposed 0'],
    );
    assert.deepEqual((await listing('beta')).repositories, []);
  });

  test('a good report is stored, its text cleaned and bounded', async () => {
    acme.send({
      type: 'managed',
      label: 'files/share',
      state: 'refused',
      reason: `10.0.0.5:445 is outside managed.allow\u0007 ${'x'.repeat(900)}`,
      uri: 'smb://10.0.0.5:445',
    });
    const r = await waitFor(async () => (await listing()).repositories[0]?.connectors[0], {
      what: 'the stored answer',
    });
    assert.equal(r.state, 'refused');
    assert.equal(r.hostname, 'host?[31m', 'the host name is cleaned of control characters');
    assert.ok(r.reason!.startsWith('10.0.0.5:445 is outside managed.allow? x'));
    assert.equal(r.reason!.length, 500);
    await gw.output.wait(/"event":"managed\.refused".*"tenant":"acme"/, 10_000);
  });

  test('a removed proposal reaches the connector as a new batch without it', async () => {
    const before = acme.messages.filter((m) => m.type === 'proposals-done').length;
    const del = await gw.api('DELETE', '/v1/tenants/acme/managed-repositories/files/share');
    assert.equal(del.status, 204);
    await waitFor(() => acme.messages.filter((m) => m.type === 'proposals-done').length > before, {
      what: 'a new batch',
    });
    const sinceLast = acme.messages.slice(
      acme.messages.findLastIndex((m) => m.type === 'proposals-done') - 1,
    );
    assert.equal(sinceLast.filter((m) => m.type === 'propose').length, 0);
    assert.deepEqual((await listing()).repositories, []);
    const again = await gw.api('DELETE', '/v1/tenants/acme/managed-repositories/files/share');
    assert.equal(again.status, 404);
    assert.equal((again.json as { error: { code: string } }).error.code, 'MANAGED_NOT_FOUND');
  });
});
