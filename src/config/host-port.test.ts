import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { formatHostPort, parseHostPort } from './host-port.js';

test('parseHostPort reads host:port, [v6]:port and :port', () => {
  assert.deepEqual(parseHostPort('localhost:9090'), { ok: true, value: { host: 'localhost', port: 9090 } });
  assert.deepEqual(parseHostPort('[::1]:80'), { ok: true, value: { host: '::1', port: 80 } });
  assert.deepEqual(parseHostPort(':9091', { defaultHost: '' }), {
    ok: true,
    value: { host: '', port: 9091 },
  });
  assert.deepEqual(parseHostPort('remote-service.container.shipyard.run:9095'), {
    ok: true,
    value: { host: 'remote-service.container.shipyard.run', port: 9095 },
  });
});

test('parseHostPort explains what is wrong', () => {
  const problem = (s: string, opts = {}) => {
    const r = parseHostPort(s, opts);
    assert.equal(r.ok, false);
    return r.ok ? '' : r.problem;
  };
  assert.match(problem('nonsense'), /has no port/);
  assert.match(problem('host:abc'), /port "abc" is not a number/);
  assert.match(problem('host:70000'), /port 70000 is out of range \(1-65535\)/);
  assert.match(problem('host:0'), /out of range/);
  assert.match(problem(':80'), /has no host/);
  assert.match(problem('::1:80'), /\[addr\]:port/);
  assert.match(problem('bad host:80'), /is not a host name or IP address/);
  assert.match(problem(''), /is empty/);
  assert.equal(parseHostPort('127.0.0.1:0', { allowPortZero: true }).ok, true);
});

test('formatHostPort and parseHostPort round-trip', () => {
  fc.assert(
    fc.property(
      fc.oneof(fc.ipV4(), fc.ipV6(), fc.domain()),
      fc.integer({ min: 1, max: 65535 }),
      (host, port) => {
        const r = parseHostPort(formatHostPort({ host, port }));
        assert.equal(r.ok, true);
        if (r.ok) assert.deepEqual(r.value, { host, port });
      },
    ),
  );
});
