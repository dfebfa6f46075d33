import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock, tempStore } from '../../test/helpers/core.js';
import { ForwardRegistry, type LiveSession } from '../core/forward-registry.js';
import type { LogEvent } from '../log/index.js';
import { GatewayMetrics, reasonLabel } from './metrics.js';

const ev = (fields: Record<string, unknown>): LogEvent => ({
  level: 30,
  levelName: 'info',
  time: Date.now(),
  bindings: {},
  fields: fields as LogEvent['fields'],
});

function session(tenant: string, id: string, fingerprint = 'SHA256:k'): LiveSession {
  return { id, tenant, source: '127.0.0.1:1', since: 0, fingerprint, agent: 'ssh', end() {} };
}

async function value(m: GatewayMetrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = await m.registry.getSingleMetric(name)?.get();
  const v = metric?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l));
  return v?.value ?? 0;
}

test('reason labels are short slugs', () => {
  assert.equal(reasonLabel('tenant disabled (quota 0)'), 'tenant_disabled');
  assert.equal(reasonLabel('Key not registered'), 'key_not_registered');
  assert.equal(reasonLabel(''), 'unknown');
});

test('counters from registry events, the connection broker and log event records', async () => {
  const store = await tempStore();
  const reg = new ForwardRegistry(new FakeClock());
  const m = new GatewayMetrics(store, reg, { maxTenantLabels: 2 });
  try {
    const s1 = session('acme', 's1');
    reg.addSession(s1);
    reg.removeSession(s1);
    reg.addSession(session('acme', 's2'));
    reg.addSession(session('beta', 's3'));
    assert.equal(await value(m, 'tether_sessions_opened_total'), 3);
    assert.equal(await value(m, 'tether_reconnects_total', { tenant: 'acme' }), 1);
    assert.equal(await value(m, 'tether_reconnects_total', { tenant: 'beta' }), 0);

    // what the connection broker reports
    m.connectionOpened({ frontDoor: 'http_proxy', tenant: 'acme', setupMs: 4 });
    m.connectionClosed({ frontDoor: 'http_proxy', tenant: 'acme', bytesIn: 10, bytesOut: 20, durationMs: 5 });
    m.connectionOpened({ frontDoor: 'ssh_proxy', tenant: 'gamma' });
    m.connectionOpened({ frontDoor: 'ssh_proxy', tenant: 'delta' });
    assert.equal(await value(m, 'tether_connections_opened_total', { tenant: 'acme' }), 1);
    assert.equal(await value(m, 'tether_bytes_total', { tenant: 'acme', direction: 'in' }), 10);
    assert.equal(await value(m, 'tether_bytes_total', { tenant: 'acme', direction: 'out' }), 20);
    // acme and gamma took the two places; later tenants share "_other".
    assert.equal(await value(m, 'tether_connections_opened_total', { tenant: 'gamma' }), 1);
    assert.equal(await value(m, 'tether_connections_opened_total', { tenant: '_other' }), 1);

    m.observe(ev({ event: 'auth.failed', reason: 'tenant disabled (quota 0)' }));
    m.observe(ev({ event: 'auth.throttled' }));
    m.observe(ev({ event: 'forward.refused', code: 'TENANT_QUOTA_EXCEEDED' }));
    m.observe(ev({ event: 'access_proxy.denied', code: 'REPOSITORY_NOT_FOUND' }));
    m.observe(ev({ event: 'access_proxy.denied', code: 'PROXY_AUTHENTICATION_REQUIRED' }));
    m.connectionClosed({ frontDoor: 'raw_port', tenant: 'beta', bytesIn: 0, bytesOut: 0, durationMs: 1500 });
    m.connectionClosed({
      frontDoor: 'access_proxy',
      tenant: 'beta',
      bytesIn: 0,
      bytesOut: 0,
      durationMs: 20,
    });
    assert.equal(await value(m, 'tether_auth_failures_total', { reason: 'tenant_disabled' }), 1);
    assert.equal(await value(m, 'tether_auth_failures_total', { reason: 'throttled' }), 1);
    assert.equal(
      await value(m, 'tether_auth_failures_total', { reason: 'access_proxy_proxy_authentication_required' }),
      1,
    );
    assert.equal(await value(m, 'tether_forwards_refused_total', { code: 'TENANT_QUOTA_EXCEEDED' }), 1);
    assert.equal(
      await value(m, 'tether_frontdoor_requests_total', { front_door: 'access_proxy', outcome: 'denied' }),
      2,
    );
    const text = (await m.render()).body;
    assert.match(text, /^tether_frontdoor_duration_seconds_count\{front_door="raw_port"\} 1$/m);
    assert.match(text, /^tether_frontdoor_duration_seconds_bucket\{le="2.5",front_door="raw_port"\} 1$/m);
    assert.match(text, /^tether_connection_setup_seconds_bucket\{le="0.005"\} 1$/m);

    // A removed tenant's series go.
    m.observe(ev({ event: 'tenant.removed', tenant: 'acme' }));
    assert.doesNotMatch((await m.render()).body, /tenant="acme"/);
  } finally {
    m.close();
    await store.close();
  }
});
