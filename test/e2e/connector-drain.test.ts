// test-timeout: 240000 (four real connectors and a gateway; about 15 s alone)
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { forwardOf, startGateway, type TestGateway } from '../helpers/gateway.js';
import { caller, startHttpServer, type TestServer } from '../helpers/servers.js';
import { waitFor } from '../helpers/util.js';

/** One request on a new connection to the lease port: the answer's body. */
function get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: 15_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve(body));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

/** A kept-alive HTTP connection to the lease port: asks on the same socket each time. */
async function keptAlive(port: number) {
  const s = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  let buf = '';
  let closed = false;
  s.setEncoding('utf8');
  s.on('data', (c: string) => {
    buf += c;
  });
  s.on('error', () => {});
  const ended = new Promise<void>((r) =>
    s.once('close', () => {
      closed = true;
      r();
    }),
  );
  return {
    ended,
    get closed() {
      return closed;
    },
    /** Sends one request and waits for the body line. */
    ask: async (path: string): Promise<string> => {
      buf = '';
      s.write(`GET ${path} HTTP/1.1\r\nHost: drain\r\n\r\n`);
      return waitFor(() => /hello from \S+ \S+\n/.exec(buf)?.[0], {
        what: `an answer to ${path} on the kept connection`,
      });
    },
    close: () => s.end(),
  };
}

/** The JSON log line of `event` the connector wrote. */
async function logLine(c: TestConnector, event: string): Promise<Record<string, unknown>> {
  const m = await c.output.wait(new RegExp(`"event":"${event.replace('.', '\\.')}"`), 30_000);
  return JSON.parse(m.input) as Record<string, unknown>;
}

describe('a connector that stops drains: forwards cancelled first, open connections finish', () => {
  let gw: TestGateway;
  let keyFile: string;
  let webA: TestServer;
  let webB: TestServer;
  let frontDoor: number;
  const connectors: TestConnector[] = [];

  const connector = async (web: TestServer, drain: string | number, label = 'web') => {
    const c = await startConnector({
      gateway: gw.sshPort,
      tenant: 'acme',
      keyFile,
      repositories: { grp: { [label]: `http://127.0.0.1:${web.port}` } },
      config: { drain_timeout: drain },
    });
    connectors.push(c);
    return c;
  };

  before(async () => {
    gw = await startGateway({
      config: {
        worker_accept: 'primary',
        http_proxy: {
          listen: '127.0.0.1:0',
          routes: [
            { name: 'kept', path_prefix: '/kept', to: 'tenant://acme/grp/kept', auth: { type: 'none' } },
          ],
        },
      },
    });
    frontDoor = Number((await gw.output.wait(/"http_proxy":"127\.0\.0\.1:(\d+)"/))[1]);
    keyFile = await gw.addTenant('acme');
    webA = await startHttpServer('A');
    webB = await startHttpServer('B');
  });
  after(async () => {
    for (const c of connectors) await c.stop();
    await gw?.stop();
    await webA?.close();
    await webB?.close();
  });

  test('SIGTERM: new callers reach the other connector, the open connection keeps working, exit when it ends', async () => {
    const a = await connector(webA, '1h');
    const port = await a.leasePort('grp/web');
    const held = await keptAlive(port);
    assert.equal(await held.ask('/one'), 'hello from A /one\n');
    const b = await connector(webB, 0);
    assert.equal(await b.leasePort('grp/web'), port, 'the second connector shares the lease');
    await waitFor(async () => (await forwardOf(gw, 'acme', 'grp/web'))?.connectors === 2);

    a.process.kill('SIGTERM');
    const draining = await logLine(a, 'connector.draining');
    assert.equal(draining.connections, 1);
    assert.equal(draining.drain_timeout_ms, 3_600_000);
    assert.equal((await a.status()).state, 'draining');
    const shown = await a.cli(['status']);
    assert.match(
      shown.stdout,
      /^ {2}STOPPING: forwards cancelled, 1 open connection\(s\) finishing \(drain_timeout\)$/m,
    );
    // the gateway drops A's endpoint: every new caller reaches B
    await waitFor(async () => (await forwardOf(gw, 'acme', 'grp/web'))?.connectors === 1, {
      what: "the gateway to drop the draining connector's endpoint",
    });
    for (let i = 0; i < 6; i++) assert.equal(await get(port, `/new${i}`), `hello from B /new${i}\n`);
    // the connection A carries is untouched
    assert.equal(await held.ask('/two'), 'hello from A /two\n');
    assert.equal(a.process.exitCode, null, 'A still runs while its connection is open');
    assert.equal(held.closed, false);

    held.close();
    assert.equal(await a.exited(), 0);
    const drained = await logLine(a, 'connector.drained');
    assert.equal(drained.cut, 0, 'it ended because the connection finished, not at drain_timeout');
    assert.equal(drained.connections, 1);
    assert.ok((drained.duration_ms as number) < 3_600_000);
    await b.stop();
  });

  test('drain_timeout reached: what is still open is cut and the log says how many', async () => {
    const c = await connector(webA, '1s', 'late');
    const port = await c.leasePort('grp/late');
    const held = await keptAlive(port);
    assert.equal(await held.ask('/x'), 'hello from A /x\n');
    c.process.kill('SIGTERM');
    assert.equal(await c.exited(), 0);
    const drained = await logLine(c, 'connector.drained');
    assert.equal(drained.cut, 1);
    assert.ok((drained.duration_ms as number) >= 1000, `waited drain_timeout: ${drained.duration_ms} ms`);
    assert.match(String(drained.msg), /^cutting 1 connection\(s\) still open after \d+ ms of 1000 ms$/);
    await held.ended; // the caller sees its connection end
    // no connector serves it now: a new caller is refused as offline, not left hanging
    await assert.rejects(get(port, '/after'));
  });

  test('a second stop cuts at once; `tether connector stop` waits through the drain', async () => {
    const c = await connector(webA, '1h', 'twice');
    const port = await c.leasePort('grp/twice');
    const held = await keptAlive(port);
    assert.equal(await held.ask('/x'), 'hello from A /x\n');
    // the CLI asks over the control socket and waits: the connector drains meanwhile
    const first = c.cli(['stop']);
    await logLine(c, 'connector.draining');
    assert.equal(c.process.exitCode, null);
    c.process.kill('SIGINT'); // Ctrl-C again
    assert.equal(await c.exited(), 0);
    const stop = await first;
    assert.equal(stop.code, 0, stop.stderr);
    assert.equal(stop.stdout, `connector stopped (pid ${c.process.pid})\n`);
    const drained = await logLine(c, 'connector.drained');
    assert.equal(drained.cut, 1);
    assert.ok((drained.duration_ms as number) < 3_600_000);
    await held.ended;
  });

  test("the HTTP front door's kept channel to a draining connector carries no further request", async () => {
    const a = await connector(webA, '1h', 'kept');
    await a.leasePort('grp/kept');
    // one caller connection, kept alive: the front door keeps one tunnel channel for it (to A)
    const c = caller().to(frontDoor);
    const ask = (i: number) => c.send(`/kept/${i}`);
    try {
      assert.deepEqual(await ask(0), { status: 200, body: 'hello from A /kept/0\n', reused: false });
      const b = await connector(webB, 0, 'kept');
      await waitFor(async () => (await forwardOf(gw, 'acme', 'grp/kept'))?.connectors === 2);
      assert.equal((await ask(1)).body, 'hello from A /kept/1\n', 'the kept channel still goes to A');

      a.process.kill('SIGTERM');
      await logLine(a, 'connector.draining');
      await waitFor(async () => (await forwardOf(gw, 'acme', 'grp/kept'))?.connectors === 1);
      // the caller goes on asking on its connection, without a pause that would let the channel
      // idle out: the channel to A ends after the request it carries, A drains and exits
      const answers: Array<{ status: number; body: string; reused: boolean }> = [];
      const deadline = Date.now() + 60_000;
      for (let i = 2; a.process.exitCode === null; i++) {
        assert.ok(Date.now() < deadline, 'A never drained: the kept channel kept carrying requests to it');
        answers.push(await ask(i));
      }
      assert.equal(await a.exited(), 0);
      assert.equal((await logLine(a, 'connector.drained')).cut, 0);
      assert.ok(
        answers.every((x) => x.status === 200 && x.reused),
        `every request answered on the same caller connection: ${JSON.stringify(answers.slice(0, 5))}`,
      );
      const fromA = answers.filter((x) => x.body.startsWith('hello from A')).length;
      assert.ok(fromA <= 1, `at most the request in flight went to A after the cancel: ${fromA}`);
      assert.match((await ask(9999)).body, /^hello from B \/kept\/9999\n$/);
      await b.stop();
    } finally {
      c.close();
    }
  });

  test('a stop with no connection open, or with drain_timeout 0, exits without waiting', async () => {
    const idle = await connector(webA, '1h', 'idle');
    await idle.leasePort('grp/idle');
    idle.process.kill('SIGTERM');
    assert.equal(await idle.exited(), 0);
    assert.equal(
      idle.output.lines.some((l) => l.includes('"event":"connector.draining"')),
      false,
    );

    const now = await connector(webA, 0, 'now');
    const held = await keptAlive(await now.leasePort('grp/now'));
    assert.equal(await held.ask('/x'), 'hello from A /x\n');
    now.process.kill('SIGTERM');
    assert.equal(await now.exited(), 0);
    await held.ended;
    assert.equal(
      now.output.lines.some((l) => l.includes('"event":"connector.draining"')),
      false,
    );
  });
});
