/**
 * A caller that reaches a member which does not serve the forward is relayed to the owner; the
 * caller's real address travels with it (a signed relay header), so the owner's audit record
 * and the connector's channel origin name the caller, not the relaying member.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startClusterMembers } from '../helpers/cluster.js';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import type { TestGateway } from '../helpers/gateway.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { closedAt, openEcho, startEchoServer, type TestServer, tcpExchange } from '../helpers/servers.js';
import { waitFor } from '../helpers/util.js';

/** Connects from `from` (a loopback address), sends `payload`, returns the answer and the local port. */
function exchange(
  host: string,
  port: number,
  from: string,
  payload: string,
): Promise<{ answer: string; localPort: number }> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, localAddress: from });
    const chunks: Buffer[] = [];
    let localPort = 0;
    s.on('connect', () => {
      localPort = s.localPort ?? 0;
      s.write(payload);
    });
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      if (Buffer.concat(chunks).length >= payload.length) s.end();
    });
    // a reset or a refused connect is an empty answer (the caller sees its connection closed)
    s.on('close', () => resolve({ answer: Buffer.concat(chunks).toString(), localPort }));
    s.on('error', () => {});
    s.setTimeout(15_000, () => s.destroy(new Error('no answer in 15 s')));
  });
}

describe('cluster relay: the caller address reaches the owner', () => {
  let pg: TestPostgres;
  const members: TestGateway[] = [];
  let echo: TestServer;
  let conn: TestConnector;
  let lease: number;
  const ips = ['127.0.0.2', '127.0.0.3'];

  before(async () => {
    pg = await startPostgres();
    const url = await pg.newDatabase();
    members.push(...(await startClusterMembers({ store: url, ips, ports: 6 })));
    echo = await startEchoServer();
    const add = await members[0]!.tether(['tenants', 'add', 'acme']);
    assert.equal(add.code, 0, add.stderr);
    const keyFile = `${members[0]!.dir}/acme.key`;
    const { writeFileSync } = await import('node:fs');
    writeFileSync(keyFile, add.stdout, { mode: 0o600 });
    // The connector's session is on gw1 only: gw2 relays.
    conn = await startConnector({
      gateway: `${ips[0]}:${members[0]!.sshPort}`,
      tenant: 'acme',
      keyFile,
      config: { gateway_fingerprint: members[0]!.hostFingerprint },
      repositories: { grp: { echo: `tcp://127.0.0.1:${echo.port}` } },
    });
    lease = await conn.leasePort('grp/echo');
  });

  after(async () => {
    await conn?.stop();
    for (const m of members) await m.stop();
    await echo?.close();
    await pg?.stop();
  });

  test("a relayed caller's address is in the owner's audit record (the origin the broker hands the connector)", async () => {
    // gw2 opens the lease port once it has read the directory.
    const { answer, localPort } = await waitFor(
      async () => {
        const r = await exchange(ips[1]!, lease, '127.0.0.9', 'hello through gw2');
        return r.answer === 'hello through gw2' ? r : undefined;
      },
      { timeout: 20_000, what: 'the lease port answering on gw2' },
    );
    assert.equal(answer, 'hello through gw2', 'the bytes arrive unchanged (no header leaks through)');
    const caller = `127.0.0.9:${localPort}`;
    // gw2 opened its side of the relay with the caller's address too
    await members[1]!.output.wait(
      new RegExp(`"event":"connection.opened".*"port":${lease}.*"source":"${caller.replace(/\./g, '\\.')}"`),
    );
    // the owner's record names the caller, not gw2
    const owner = await members[0]!.output.wait(
      new RegExp(`"event":"connection.closed".*"port":${lease}.*"source":"${caller.replace(/\./g, '\\.')}"`),
    );
    assert.match(owner.input, /"bytes_in":17,"bytes_out":17/);
  });

  test('several relayed callers at once, each its own random bytes both ways: every stream intact', async () => {
    // The owner moves a relayed caller into packet rooms before it answers the relaying member
    // (rooms are used again once written: releasing them early is caught by packet-read.test.ts
    // and the WebSocket/TLS tunnel test, where writes queue; here they rarely do).
    await waitFor(async () => (await exchange(ips[1]!, lease, '127.0.0.9', 'ready')).answer === 'ready', {
      timeout: 20_000,
      what: 'the lease port answering on gw2',
    });
    const payloads = Array.from({ length: 4 }, () => randomBytes(3 * 1024 * 1024));
    const back = await Promise.all(payloads.map((p) => tcpExchange(lease, p, p.length, ips[1]!)));
    for (const [i, p] of payloads.entries()) {
      assert.equal(back[i]!.length, p.length, `stream ${i}: every byte came back`);
      assert.ok(back[i]!.equals(p), `stream ${i} came back intact through the relaying member`);
    }
  });

  test('a relay header from a non-member is only data; a forged one from a member address is refused', async () => {
    // A caller (not a member) that sends a relay header: no member address, so it is the
    // caller's own bytes and reach the destination as they are; the record has its own address.
    const forged = `TETHER-RELAY 1 203.0.113.5 4444 ${lease} ${Date.now()} ${'0'.repeat(64)}\n`;
    const direct = await exchange(ips[0]!, lease, '127.0.0.9', forged);
    assert.equal(direct.answer, forged);
    await members[0]!.output.wait(
      new RegExp(
        `"event":"connection.opened".*"port":${lease}.*"source":"127\\.0\\.0\\.9:${direct.localPort}"`,
      ),
    );
    // The same header from gw2's address (a host that shares it), with a wrong signature: refused.
    const spoof = await exchange(ips[0]!, lease, ips[1]!, forged);
    assert.equal(spoof.answer, '', 'the connection is closed, nothing reaches the destination');
    await members[0]!.output.wait(
      new RegExp(
        `"event":"cluster.relay_refused".*"port":${lease}.*"source":"127\\.0\\.0\\.3:${spoof.localPort}".*refused a relayed connection to lease port ${lease}: relay header with a wrong signature`,
      ),
    );
    assert.doesNotMatch(members[0]!.output.text(), /203\.0\.113\.5/, 'the forged address is never taken');
  });
  test('allow_from narrowed on either member ends a relayed caller it no longer admits within 1 s', async () => {
    await waitFor(async () => (await exchange(ips[1]!, lease, '127.0.0.9', 'ready')).answer === 'ready', {
      timeout: 20_000,
      what: 'the lease port answering on gw2',
    });
    // a caller relayed by gw2 to gw1; the list changes on the relaying member, then on the owner
    for (const [i, where] of [
      [1, 'the relaying member'],
      [0, 'the owner'],
    ] as const) {
      const s = await openEcho(lease, { host: ips[1]!, localAddress: '127.0.0.9' });
      const closed = closedAt(s, 10_000);
      const from = members[i]!.output.lines.length;
      try {
        const r = await members[i]!.api('PATCH', '/v1/tenants/acme', { allow_from: ['127.0.0.1/32'] });
        const ackAt = Date.now();
        assert.equal(r.status, 200, JSON.stringify(r.json));
        const cutMs = Math.max(0, (await closed) - ackAt);
        assert.ok(
          cutMs < 1_000,
          `changed on ${where}: the relayed caller was cut ${cutMs} ms after the change`,
        );
        // the member that made the change ended the connection it tracks itself
        await members[i]!.output.wait(/"event":"tenant\.allowlists_enforced","tenant":"acme"/, 10_000, from);
      } finally {
        s.destroy();
        await members[i]!.api('PATCH', '/v1/tenants/acme', { allow_from: null });
      }
      // both members have the list removed again before the next round
      await waitFor(async () => (await exchange(ips[1]!, lease, '127.0.0.9', 'again')).answer === 'again', {
        timeout: 20_000,
        what: 'the caller admitted again',
      });
    }
  });
});
