import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { type EndpointView, forwardOf, startGateway, type TestGateway } from '../helpers/gateway.js';
import { nextEvent, waitFor } from '../helpers/util.js';

async function endpoints(gw: TestGateway): Promise<EndpointView[]> {
  return (await forwardOf(gw, 'acme', 'grp/web'))?.endpoints ?? [];
}

async function site(): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((_req, res) => res.end('hello\n'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('`tether tenants repos` lists the connectors of each repository', () => {
  let gw: TestGateway;
  let a: Awaited<ReturnType<typeof site>>;
  let b: Awaited<ReturnType<typeof site>>;
  const connectors: TestConnector[] = [];
  let held: net.Socket | undefined;

  before(async () => {
    [gw, a, b] = await Promise.all([startGateway(), site(), site()]);
    const keyFile = await gw.addTenant('acme');
    for (const web of [a, b]) {
      connectors.push(
        await startConnector({
          gateway: gw.sshPort,
          tenant: 'acme',
          keyFile,
          repositories: { grp: { web: `http://127.0.0.1:${web.port}` } },
          config: { health_check: { tcp: true, interval: '1s', timeout: '1s' } },
        }),
      );
    }
  });
  after(async () => {
    held?.destroy();
    for (const c of connectors) await c.stop();
    await gw?.stop();
    await a?.close();
    await b?.close();
  });

  test('two connectors, one with an open connection, then one withdrawn with its reason', async (t) => {
    const lease = await connectors[0]!.leasePort('grp/web');
    await waitFor(async () => (await endpoints(gw)).length === 2, { what: 'two connectors' });
    held = net.connect(lease, '127.0.0.1');
    await nextEvent(held!, 'connect');
    const eps = await waitFor(
      async () => {
        const e = await endpoints(gw);
        return e.reduce((n, x) => n + x.connections, 0) === 1 ? e : undefined;
      },
      { what: 'the held connection counted on one connector' },
    );

    const r = await gw.tether(['tenants', 'repos', 'acme']);
    assert.equal(r.code, 0, r.stderr);
    for (const l of r.stdout.trimEnd().split('\n')) t.diagnostic(l);
    const lines = r.stdout.trimEnd().split('\n');
    // a NODE column only where there is more than one node: cluster members, or `workers`
    const node =
      gw.workerPids().length > 0 ? { head: '\\s+NODE', cell: '\\s+worker-\\S+' } : { head: '', cell: '' };
    assert.match(
      lines[0]!,
      new RegExp(
        `^GROUP\\s+REPOSITORY\\s+ADDRESS\\s+SERVICE\\s+DESTINATION\\s+PORT\\s+STATE\\s+CONNECTIONS${node.head}$`,
      ),
      'the columns stay as they were',
    );
    assert.match(
      lines[1]!,
      new RegExp(
        `^grp\\s+web\\s+web\\.grp\\.acme\\s+http\\s+127\\.0\\.0\\.1:\\d+\\s+${lease}\\s+online\\s+1${node.cell}$`,
      ),
    );
    // One indented line per connector, right below its repository, in the API's order.
    for (const [i, e] of eps.entries()) {
      assert.match(
        lines[2 + i]!,
        new RegExp(
          `^  connector ${esc(e.source)}\\s+to ${esc(e.destination ?? '')}\\s+since \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\dZ\\s+${e.connections === 1 ? '1 connection ' : '0 connections'}\\s+online$`,
        ),
      );
    }
    assert.equal(lines[4], '', 'then the group keys');
    assert.match(lines[5]!, /^GROUP\s+KEY\s+KEY CREATED$/);
    // The columns of the connector lines line up.
    assert.equal(lines[2]!.indexOf(' since '), lines[3]!.indexOf(' since '));
    // Each connector names its own destination (A's and B's sites).
    assert.deepEqual(
      eps.map((e) => e.destination).sort(),
      [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`].sort(),
    );
    assert.equal(lines[2]!.search(/\d+ connections?/), lines[3]!.search(/\d+ connections?/));

    // B's destination stops: its connector withdraws the repository and the table says why.
    held.destroy();
    await b.close();
    const withdrawn = await waitFor(async () => (await endpoints(gw)).find((e) => e.state === 'withdrawn'), {
      what: 'the connector of B to withdraw',
    });
    await waitFor(async () => (await endpoints(gw)).every((e) => e.connections === 0), {
      what: 'the held connection closed',
    });
    const r2 = await gw.tether(['tenants', 'repos', 'acme']);
    assert.equal(r2.code, 0, r2.stderr);
    for (const l of r2.stdout.trimEnd().split('\n')) t.diagnostic(l);
    const lines2 = r2.stdout.trimEnd().split('\n');
    assert.match(
      lines2[1]!,
      new RegExp(`^grp\\s+web\\s+.*\\s+online\\s+0${node.cell}$`),
      'the repository stays online',
    );
    assert.match(
      lines2[1]!,
      new RegExp(`\\s127\\.0\\.0\\.1:${a.port}\\s`),
      "the repository's destination is the online connector's, not the withdrawn one's",
    );
    const connectorLines = lines2.slice(2, 4);
    assert.equal(
      connectorLines.filter((l) =>
        new RegExp(
          `^  connector ${esc(withdrawn.source)}\\s+to 127\\.0\\.0\\.1:${b.port}\\s+since \\S+ \\S+\\s+0 connections\\s+withdrawn: health check failed: 127\\.0\\.0\\.1:${b.port}: connection refused$`,
        ).test(l),
      ).length,
      1,
      r2.stdout,
    );
    assert.equal(connectorLines.filter((l) => /\s+0 connections\s+online$/.test(l)).length, 1, r2.stdout);

    // `tether tenants list` shows each connector too (source, since, connections, state).
    const list = await gw.tether(['tenants', 'list', 'acme']);
    assert.equal(list.code, 0, list.stderr);
    for (const l of list.stdout.trimEnd().split('\n')) t.diagnostic(l);
    assert.match(list.stdout, /^TENANT\s+FORWARD\s+CONNECTOR\s+CONNECTED SINCE\s+CONNECTIONS\s+STATE$/m);
    for (const e of await endpoints(gw)) {
      assert.match(
        list.stdout,
        new RegExp(
          `^acme\\s+grp/web\\s+${esc(e.source)}\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\dZ\\s+0\\s+${e.state === 'withdrawn' ? 'withdrawn: health check failed' : 'online$'}`,
          'm',
        ),
      );
    }
  });
});
