// test-timeout: 180000 (a gateway with two workers and 1,100 callers)
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Client } from 'ssh2';
import { forwardIn, forwardsOf, echoLogin as login } from '../helpers/echo-logins.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { tcpExchange } from '../helpers/servers.js';
import { waitFor } from '../helpers/util.js';

/**
 * Under `worker_accept: primary` the primary accepts every connection and passes its socket to a
 * worker: a worker that stops taking them must not make the primary hold an unbounded queue.
 */

const echo = async (port: number, text: string) => (await tcpExchange(port, text, text.length)).toString();

describe('gateway with workers: 2, a worker that stops taking connections', () => {
  let gw: TestGateway;
  const clients: Client[] = [];
  const callers: net.Socket[] = [];
  let stopped: number | undefined;

  before(async () => {
    gw = await startGateway({ config: { workers: 2, worker_accept: 'primary' }, ports: 20 });
  });

  after(async () => {
    if (stopped !== undefined) process.kill(stopped, 'SIGCONT');
    for (const s of callers) s.destroy();
    for (const c of clients) c.end();
    await gw?.stop();
  });

  test('a flood on its lease port: the primary holds at most 1,024 sockets on their way to it and closes the rest at once; another tenant on the other worker is served throughout, and the port serves again once the worker runs', async () => {
    const keys = { acme: await gw.addTenant('acme'), other: await gw.addTenant('other') };
    // two logins in a row: the primary passes them to the workers in turn
    for (const t of ['acme', 'other'] as const) {
      const c = await login(gw.sshPort, t, keys[t]);
      c.on('error', () => {}); // a session cut as the gateway stops is not this test's error
      clients.push(c);
      assert.equal((await forwardIn(c, 'g/echo')).err, undefined);
    }
    const forwardOf = (t: string) =>
      waitFor(async () => (await forwardsOf(gw, t)).find((f) => f.state === 'online'), {
        what: `${t} online`,
      });
    const acme = await forwardOf('acme');
    const other = await forwardOf('other');
    assert.notEqual(acme.node, other.node, 'the two sessions sit on different workers');
    const victim = gw.workerPids()[Number(/^worker-(\d)$/.exec(acme.node ?? '')?.[1]) - 1]!;
    assert.equal(await echo(acme.port, 'before\n'), 'before\n');

    // the worker serving acme stops (as a worker whose event loop is stuck): nothing it is sent is taken
    process.kill(victim, 'SIGSTOP');
    stopped = victim;
    const from = gw.output.lines.length;
    const N = 1_100;
    let closed = 0;
    for (let i = 0; i < N; i += 100)
      await Promise.all(
        Array.from(
          { length: Math.min(100, N - i) },
          () =>
            new Promise<void>((resolve, reject) => {
              const s = net.connect({ host: '127.0.0.1', port: acme.port }, () => resolve());
              callers.push(s);
              s.on('error', () => {});
              s.once('close', () => closed++);
              s.once('error', reject);
            }),
        ),
      );
    // node sends one socket at a time per worker and waits for the worker to take it: the first
    // is written to the stopped worker's channel, 1,024 more wait in the primary, the rest are closed
    await waitFor(() => closed >= N - 1_026, { timeout: 30_000, what: `${N - 1_025} callers closed` });
    const refused = await gw.output.wait(
      /"event":"bound.refused".*"reason":"connections_passing_to_workers".*"listener":"lease:(\d+)"/,
      10_000,
      from,
    );
    assert.equal(Number(refused[1]), acme.port);
    assert.ok(
      N - closed >= 1_024 && N - closed <= 1_026,
      `about 1,024 held for the stopped worker (held ${N - closed}, closed ${closed})`,
    );
    // no other tenant is harmed: other's forward, on the worker that runs, answers
    assert.equal(await echo(other.port, 'meanwhile\n'), 'meanwhile\n');

    // the held callers hang up; the worker runs again and gets them (already closed), then serves
    for (const s of callers) s.destroy();
    process.kill(victim, 'SIGCONT');
    stopped = undefined;
    const again = await waitFor(
      async () => {
        try {
          return (await echo(acme.port, 'after\n')) === 'after\n';
        } catch {
          return false;
        }
      },
      { timeout: 30_000, what: "acme's lease port serving again" },
    );
    assert.equal(again, true);
  });
});
