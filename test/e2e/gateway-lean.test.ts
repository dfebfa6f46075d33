// test-timeout: 180000 (three gateways one after the other)
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { moduleLoadRecorder } from '../helpers/module-loads.js';

/**
 * A gateway loads what its configuration uses and nothing else (docs/performance.md, "A lean
 * gateway"): single sign-on (openid-client and its JOSE stack), the cluster member and `pg`, the
 * TLS/WebSocket transports and `ws`, the front doors and pino-pretty stay unloaded until
 * gateway.yaml (or a terminal) asks for them. A module loader hook (node --import, given through
 * NODE_OPTIONS) writes every module URL the real `tether gateway` loads to a file.
 */

const loads = moduleLoadRecorder();

/** What a gateway in the default configuration must not load. */
const UNUSED: Array<[string, RegExp]> = [
  ['single sign-on', /^node_modules\/(openid-client|oauth4webapi|jose)\/|^dist\/admin\/oidc(-routes)?\.js$/],
  [
    'the cluster member and pg',
    // under `workers` the workers relay to each other with the cluster's signed header: that file only
    process.env.TETHER_TEST_WORKERS
      ? /^node_modules\/pg\/|^dist\/cluster\/(?!relay-header\.js$)/
      : /^node_modules\/pg\/|^dist\/cluster\//,
  ],
  ['the TLS/WebSocket transports and ws', /^node_modules\/ws\/|^dist\/tunnel\/(tls|websocket)/],
  ['the front doors', /^dist\/frontdoor\/(access-proxy|http-proxy|ssh-proxy)\//],
  ['a pretty-printer', /^node_modules\/(pino-pretty|thread-stream)\//],
  // src/store/kysely-module.ts loads the CommonJS build; an import from 'kysely' would add the ESM one
  ["kysely's ESM build", /^node_modules\/kysely\/dist\/esm\//],
];

const gateways: TestGateway[] = [];
after(async () => {
  for (const gw of gateways) await gw.stop();
});

/** Starts the real gateway with the hook; returns the modules it loaded by the time it is ready. */
async function loadsOf(config: Record<string, unknown> = {}): Promise<string[]> {
  const rec = loads.recorder();
  const gw = await startGateway({ config, env: { NODE_OPTIONS: `--import=${loads.hook}`, ...rec.env } });
  gateways.push(gw);
  return rec.modules();
}

describe('a gateway loads only what its configuration uses', () => {
  test('the default configuration (SQLite, admin API and dashboard, tunnel port)', async () => {
    const modules = await loadsOf();
    // The hook saw the gateway itself: an empty list would prove nothing.
    assert.ok(modules.includes('dist/gateway/index.js'), modules.join('\n'));
    assert.ok(modules.some((m) => m.startsWith('node_modules/ssh2/')));
    for (const [what, re] of UNUSED) {
      assert.deepEqual(
        modules.filter((m) => re.test(m)),
        [],
        `${what} loaded without being configured`,
      );
    }
  });

  test('single sign-on configured: openid-client is loaded (the hook sees what is loaded late)', async () => {
    const modules = await loadsOf({
      admin: {
        listen: '127.0.0.1:0',
        oidc: {
          issuer: 'https://idp.example.com',
          client_id: 'tether',
          roles: { admin: { emails: ['ops@example.com'] } },
        },
      },
    });
    assert.ok(
      modules.some((m) => m.startsWith('node_modules/openid-client/')),
      modules.filter((m) => !m.startsWith('node_modules/kysely/')).join('\n'),
    );
    assert.ok(modules.includes('dist/admin/oidc-routes.js'));
  });

  test('the access proxy configured: its module is loaded, the other front doors are not', async () => {
    const modules = await loadsOf({ access_proxy: { listen: '127.0.0.1:0' } });
    assert.ok(modules.some((m) => m.startsWith('dist/frontdoor/access-proxy/')));
    // (the access proxy shares two small helpers with the HTTP front door: its framing and
    // upstream-target modules; the front door itself, its server and routes, stay unloaded)
    assert.deepEqual(
      modules.filter((m) => /^dist\/frontdoor\/(http-proxy\/(index|server|routes)|ssh-proxy\/)/.test(m)),
      [],
    );
    assert.deepEqual(
      modules.filter((m) => /^node_modules\/(openid-client|oauth4webapi|jose)\//.test(m)),
      [],
    );
  });
});
