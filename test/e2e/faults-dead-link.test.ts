import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startEchoServer, type TestServer, tcpExchange } from '../helpers/servers.js';
import { waitFor } from '../helpers/util.js';

/** The keepalive both sides use here: 2 s, dead after 3 unanswered. */
const INTERVAL = 2_000;
const COUNT = 3;
/** Silence is noticed within interval × (count + 1); allow a busy machine 3 s more. */
const NOTICE_WITHIN = INTERVAL * (COUNT + 1) + 3_000;

async function echoWorks(port: number): Promise<boolean> {
  const payload = Buffer.from('ping through the tunnel\n');
  const back = await tcpExchange(port, payload, payload.length).catch(() => Buffer.alloc(0));
  return back.equals(payload);
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

interface TenantJson {
  sessions: unknown[];
  forwards: Array<{ label: string; state: string }>;
}

describe('faults: a silently dead link', () => {
  let gw: TestGateway;
  let conn: TestConnector;
  let echo: TestServer;
  let port: number;

  before(async () => {
    [gw, echo] = await Promise.all([
      startGateway({
        config: { tunnel: { keepalive_interval: `${INTERVAL}ms`, keepalive_count_max: COUNT } },
      }),
      startEchoServer(),
    ]);
    const keyFile = await gw.addTenant('acme');
    conn = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile,
      config: { keepalive_interval: `${INTERVAL}ms`, keepalive_count_max: COUNT },
      repositories: { grp: { echo: `tcp://127.0.0.1:${echo.port}` } },
    });
    port = await conn.leasePort('grp/echo');
    assert.ok(await echoWorks(port));
  });
  after(async () => {
    if (gw?.process.exitCode === null) gw.signalAll('SIGCONT');
    if (conn?.process.exitCode === null) conn.process.kill('SIGCONT');
    await conn?.stop();
    await gw?.stop();
    await echo?.close();
  });

  test('gateway frozen (SIGSTOP): the connector notices within its keepalive window and reconnects after SIGCONT', async (t) => {
    gw.signalAll('SIGSTOP'); // every process of it (under `workers`, a worker holds the session)
    const stoppedAt = Date.now();
    let noticed: number;
    try {
      await waitFor(async () => !(await conn.status()).connected, {
        timeout: NOTICE_WITHIN + 5_000,
        interval: 100,
        what: 'the connector to notice the silent gateway',
      });
      noticed = Date.now() - stoppedAt;
    } finally {
      gw.signalAll('SIGCONT');
    }
    const resumedAt = Date.now();
    const st = await conn.status();
    t.diagnostic(`noticed after ${noticed} ms (${st.lastError})`);
    assert.ok(noticed <= NOTICE_WITHIN, `noticed after ${noticed} ms, window ${NOTICE_WITHIN} ms`);
    assert.match(st.lastError ?? '', /keepalive|timed out|timeout/i);

    const back = await conn.leasePort('grp/echo', 30_000);
    const reconnected = Date.now() - resumedAt;
    t.diagnostic(`active again ${reconnected} ms after SIGCONT, on port ${back}`);
    assert.equal(back, port, 'the same lease port');
    await waitFor(() => echoWorks(port), { timeout: 10_000, what: 'traffic through the new session' });
    // the gateway dropped the dead session: one session left
    await waitFor(
      async () =>
        ((await gw.api('GET', '/v1/tenants/acme')).json as { tenant: TenantJson }).tenant.sessions.length ===
        1,
      { timeout: NOTICE_WITHIN, what: 'the stale session to go' },
    );
  });

  test('connector frozen (SIGSTOP): the gateway closes its lease within the keepalive window; SIGCONT brings it back', async (t) => {
    conn.process.kill('SIGSTOP');
    const stoppedAt = Date.now();
    let dropped: number;
    try {
      await waitFor(
        async () => {
          const j = (await gw.api('GET', '/v1/tenants/acme')).json as { tenant: TenantJson };
          return j.tenant.sessions.length === 0 && j.tenant.forwards.every((f) => f.state === 'offline');
        },
        { timeout: NOTICE_WITHIN + 5_000, interval: 100, what: 'the gateway to drop the silent connector' },
      );
      dropped = Date.now() - stoppedAt;
      assert.ok(await refused(port), 'the lease port no longer accepts connections');
    } finally {
      conn.process.kill('SIGCONT');
    }
    const resumedAt = Date.now();
    t.diagnostic(`gateway dropped the session after ${dropped} ms`);
    assert.ok(dropped <= NOTICE_WITHIN, `dropped after ${dropped} ms, window ${NOTICE_WITHIN} ms`);

    await waitFor(() => echoWorks(port), { timeout: 30_000, what: 'traffic after SIGCONT' });
    t.diagnostic(`traffic flows again ${Date.now() - resumedAt} ms after SIGCONT`);
    assert.equal(await conn.leasePort('grp/echo'), port);
  });
});
