import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type ConnectorStatus, formatStatus } from './status.js';

const base: ConnectorStatus = {
  pid: 42,
  config: '/etc/tether/connect.yaml',
  state: 'connected',
  connected: true,
  gateway: 'gw.example.com:2222',
  tenant: 'acme',
  fingerprint: 'SHA256:abc',
  since: '2026-01-01T00:00:00.000Z',
  quota: 20,
  lastError: null,
  nextRetryAt: null,
  attempts: 0,
  repositories: [
    {
      label: 'g/web',
      service: 'http',
      uri: 'http://web',
      destination: 'web:80',
      leasePort: 2200,
      state: 'active',
      reason: null,
      connections: 1,
      totalConnections: 5,
      bytesIn: 100,
      bytesOut: 3 * 1024 * 1024,
      dialFailures: 0,
    },
    {
      label: 'g/big',
      service: 'smb',
      uri: 'smb://fs',
      destination: 'fs:445',
      leasePort: null,
      state: 'rejected',
      reason: 'quota exceeded (20 of 20 in use)',
      connections: 0,
      totalConnections: 0,
      bytesIn: 0,
      bytesOut: 0,
      dialFailures: 0,
    },
  ],
};

test('status text: session line, fingerprint, one row per repository with lease, bytes and state', () => {
  const text = formatStatus(base, Date.parse('2026-01-01T00:03:12Z'));
  assert.equal(
    text,
    [
      'connected to gw.example.com:2222 as tenant acme since 2026-01-01T00:00:00.000Z (3m12s ago)',
      'gateway fingerprint: SHA256:abc',
      'quota: 20 forwards',
      'pid 42, config /etc/tether/connect.yaml',
      '',
      'REPOSITORY  DESTINATION  LEASE  CONNS  BYTES IN / OUT   STATE',
      'g/web       http web:80  2200   1      100 B / 3.0 MiB  active',
      'g/big       smb fs:445   -      0      0 B / 0 B        rejected: quota exceeded (20 of 20 in use)',
      '',
    ].join('\n'),
  );
});

test('status text when disconnected says why and when the next attempt is', () => {
  const text = formatStatus(
    {
      ...base,
      state: 'disconnected',
      connected: false,
      lastError: 'cannot reach the gateway at gw.example.com:2222: connect ECONNREFUSED',
      nextRetryAt: '2026-01-01T00:00:05.000Z',
      attempts: 3,
      repositories: [],
    },
    Date.parse('2026-01-01T00:00:03Z'),
  );
  assert.match(
    text,
    /^NOT connected to gw\.example\.com:2222 \(disconnected since 2026-01-01T00:00:00\.000Z \(3s ago\)\)$/m,
  );
  assert.match(
    text,
    /^ {2}last error: cannot reach the gateway at gw\.example\.com:2222: connect ECONNREFUSED$/m,
  );
  assert.match(text, /^ {2}next attempt: 2026-01-01T00:00:05\.000Z \(attempt 4\)$/m);
  assert.match(text, /no repositories configured/);
});

test('status text while draining says it is stopping and how many connections are finishing', () => {
  const text = formatStatus({ ...base, state: 'draining' }, Date.parse('2026-01-01T00:03:12Z'));
  assert.match(
    text,
    /^connected to gw\.example\.com:2222 .*\n {2}STOPPING: forwards cancelled, 1 open connection\(s\) finishing \(drain_timeout\)$/m,
  );
});

test('status text names a repository a reload removed while its connections finish, and when they are cut', () => {
  const text = formatStatus(
    { ...base, finishing: [{ label: 'docs/old', connections: 2, cutAt: '2026-01-01T00:03:17.000Z' }] },
    Date.parse('2026-01-01T00:03:12Z'),
  );
  assert.match(
    text,
    /^removed by a reload: docs\/old, 2 open connection\(s\) finishing \(cut at 2026-01-01T00:03:17\.000Z\)$/m,
  );
  assert.doesNotMatch(formatStatus(base), /removed by a reload/, 'nothing finishing: no line');
});
