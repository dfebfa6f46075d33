import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { createConnectorMetrics } from './metrics.js';
import type { ConnectorStatus, RepoStatus } from './status.js';

function repo(label: string, over: Partial<RepoStatus> = {}): RepoStatus {
  return {
    label,
    service: 'http',
    uri: 'http://web.internal:80',
    destination: 'web.internal:80',
    leasePort: 2201,
    state: 'active',
    reason: null,
    connections: 0,
    totalConnections: 0,
    bytesIn: 0,
    bytesOut: 0,
    dialFailures: 0,
    ...over,
  };
}

test('connector metrics: session state, repositories, connections and bytes, on their own port', async () => {
  const source = Object.assign(new EventEmitter(), {
    current: {
      pid: process.pid,
      config: 'connect.yaml',
      state: 'connected',
      connected: true,
      gateway: 'gw:2222',
      tenant: 'acme',
      fingerprint: null,
      since: null,
      quota: 20,
      lastError: null,
      nextRetryAt: null,
      attempts: 0,
      repositories: [
        repo('grp/web', { connections: 2, totalConnections: 7, bytesIn: 1000, bytesOut: 5000 }),
        repo('grp/smb', { state: 'unreachable', reason: 'ECONNREFUSED', dialFailures: 3 }),
      ],
    } as ConnectorStatus,
    status(): ConnectorStatus {
      return this.current;
    },
  });
  const m = createConnectorMetrics(source);
  const addr = await m.listen('127.0.0.1', 0);
  try {
    source.emit('connected');
    source.emit('disconnected');
    source.emit('connected');
    const res = await fetch(`http://127.0.0.1:${addr.port}/metrics`);
    assert.equal(res.status, 200);
    const text = await res.text();
    const has = (line: string) => assert.ok(text.split('\n').includes(line), `${line} in\n${text}`);
    has('tether_connector_connected 1');
    has('tether_connector_quota 20');
    has('tether_connector_repositories{state="active"} 1');
    has('tether_connector_repositories{state="unreachable"} 1');
    has('tether_connector_repositories{state="rejected"} 0');
    has('tether_connector_connections_active{repository="grp/web"} 2');
    has('tether_connector_connections_total{repository="grp/web"} 7');
    has('tether_connector_bytes_total{repository="grp/web",direction="in"} 1000');
    has('tether_connector_bytes_total{repository="grp/web",direction="out"} 5000');
    has('tether_connector_dial_failures_total{repository="grp/smb"} 3');
    has('tether_connector_dial_failures_total{repository="grp/web"} 0');
    has('tether_connector_sessions_total 2');
    has('tether_connector_reconnects_total 1');
    has('tether_connector_disconnects_total 1');
    assert.match(text, /^tether_connector_process_cpu_seconds_total /m);

    source.current = { ...source.current, connected: false, repositories: [] };
    const again = await (await fetch(`http://127.0.0.1:${addr.port}/metrics`)).text();
    assert.match(again, /^tether_connector_connected 0$/m);
    assert.doesNotMatch(again, /repository="grp\/web"/);

    const other = await fetch(`http://127.0.0.1:${addr.port}/`);
    assert.equal(other.status, 404);
    assert.equal(await other.text(), 'only GET /metrics here\n');
  } finally {
    await m.close();
  }
  assert.equal(source.listenerCount('connected'), 0);
});
