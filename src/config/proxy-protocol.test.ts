import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gatewayConfigFrom } from './gateway.js';

const load = (raw: unknown) => gatewayConfigFrom(raw, 'gateway.yaml', {});

test('proxy_protocol and trusted_proxies on every listener; defaults off', () => {
  const cfg = load({
    tunnel: { proxy_protocol: 'required', trusted_proxies: ['10.0.0.0/24', '2001:db8::/64'] },
    forwards: { proxy_protocol: 'optional', trusted_proxies: ['10.0.0.7'] },
    access_proxy: { proxy_protocol: 'optional', trusted_proxies: ['10.0.0.7'] },
    ssh_proxy: {
      proxy_protocol: 'required',
      trusted_proxies: ['10.0.0.7'],
      realms: { s: { type: 'tenant' } },
    },
  });
  assert.equal(cfg.tunnel.proxy_protocol, 'required');
  assert.deepEqual(cfg.forwards.trusted_proxies, ['10.0.0.7']);
  assert.equal(cfg.ssh_proxy?.proxy_protocol, 'required');
  assert.deepEqual(cfg.proxy_header, { timeout: 5_000, max_bytes: 1_536, max_pending: 256 });
  const plain = load({});
  assert.equal(plain.tunnel.proxy_protocol, 'off');
  assert.equal(plain.forwards.proxy_protocol, 'off');
});

test('bad values are config errors naming the key and the value', () => {
  assert.throws(
    () => load({ tunnel: { proxy_protocol: 'required' } }),
    /tunnel\.trusted_proxies: proxy_protocol: required needs the load balancers' addresses in trusted_proxies/,
  );
  assert.throws(
    () => load({ forwards: { proxy_protocol: 'optional', trusted_proxies: ['10.0.0.0/33'] } }),
    /forwards\.trusted_proxies: invalid address block "10\.0\.0\.0\/33": the prefix length must be a whole number from 0 to 32/,
  );
  assert.throws(
    () => load({ tunnel: { proxy_protocol: 'v2' } }),
    /tunnel\.proxy_protocol: use off, optional or required/,
  );
  assert.throws(
    () =>
      load({
        tunnel: {
          proxy_protocol: 'optional',
          trusted_proxies: Array.from({ length: 65 }, (_, i) => `10.${i}.0.0/16`),
        },
      }),
    /trusted_proxies holds 65 address blocks; at most 64/,
  );
  assert.throws(() => load({ proxy_header: { max_bytes: 10 } }), /proxy_header\.max_bytes/);
});
