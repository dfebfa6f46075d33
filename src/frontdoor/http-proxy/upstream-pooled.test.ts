import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { FakeClock } from '../../../test/helpers/core.js';
import { httpProxySchema } from '../../config/http-proxy.js';
import { silentLogger } from '../../log/index.js';
import { prepareRoutes } from './index.js';

const require = createRequire(import.meta.url);
const undiciLoaded = () => Object.keys(require.cache).some((k) => k.includes('/node_modules/undici/'));

test('undici is loaded by the first request to a URL route only; each URL route gets its own pool', async () => {
  const deps = { clock: new FakeClock(), log: silentLogger() };
  const tunnelOnly = httpProxySchema.parse({
    listen: '127.0.0.1:0',
    routes: [{ path_prefix: '/wiki', to: 'tenant://acme/grp/web', auth: { type: 'none' } }],
  });
  const [wiki] = prepareRoutes(tunnelOnly, deps);
  assert.equal(wiki?.pool, undefined);
  assert.equal(undiciLoaded(), false, 'routes into tunnels do not load undici');

  const withUrls = httpProxySchema.parse({
    listen: '127.0.0.1:0',
    routes: [
      { path_prefix: '/a', to: 'http://127.0.0.1:9/base', auth: { type: 'none' } },
      { path_prefix: '/b', to: 'http://[::1]:9', auth: { type: 'none' } },
      { path_prefix: '/wiki', to: 'tenant://acme/grp/web', auth: { type: 'none' } },
    ],
  });
  const routes = prepareRoutes(withUrls, deps);
  assert.equal(undiciLoaded(), false, 'URL routes that got no request yet do not load undici');
  assert.ok(routes[0]?.pool && routes[1]?.pool);
  assert.equal(routes[2]?.pool, undefined);
  const a = routes[0].pool.get();
  assert.equal(undiciLoaded(), true);
  assert.equal(routes[0].pool.get(), a, 'one pool per route, made once');
  assert.notEqual(routes[1].pool.get(), a);
  await Promise.all(routes.map((r) => r.pool?.destroy()));
});
