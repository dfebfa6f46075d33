import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isTetherError } from '../errors/index.js';
import { connectConfigFromText } from './connect.js';
import { gatewayConfigFrom } from './gateway.js';
import { DEFAULT_MAX_WINDOW, parseByteSize } from './window-size.js';

const MiB = 1024 * 1024;

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(isTetherError(e, 'CONFIG_INVALID'), `expected CONFIG_INVALID, got ${String(e)}`);
    return e.message;
  }
  assert.fail('expected the config to be refused');
}

test('max_window: default 32 MiB on both ends; bytes or "…MiB" accepted', () => {
  assert.equal(DEFAULT_MAX_WINDOW, 32 * MiB);
  assert.equal(gatewayConfigFrom({}, 'gw.yaml', {}).tunnel.max_window, 32 * MiB);
  assert.equal(
    gatewayConfigFrom({ tunnel: { max_window: '64MiB' } }, 'gw.yaml', {}).tunnel.max_window,
    64 * MiB,
  );
  assert.equal(
    gatewayConfigFrom({ tunnel: { max_window: 4194304 } }, 'gw.yaml', {}).tunnel.max_window,
    4 * MiB,
  );
  const c = (extra: string) =>
    connectConfigFromText(`gateway: g\nssh_key: /k\n${extra}`, '/etc/connect.yaml', {});
  assert.equal(c('').maxWindow, 32 * MiB);
  assert.equal(c('max_window: 25MB\n').maxWindow, 25_000_000);
  assert.equal(parseByteSize('2 MiB'), 2 * MiB);
  assert.equal(parseByteSize('lots'), null);
});

test('max_window: a bad size names the key and the accepted range', () => {
  const hint = /is not a window size \(use bytes or e\.g\. "32MiB"; from 2MiB to 1GiB\)/;
  for (const bad of ['1MiB', '2GiB', 'big', '12 parsecs', 1.5, -1]) {
    const msg = refusal(() => gatewayConfigFrom({ tunnel: { max_window: bad } }, 'gw.yaml', {}));
    assert.match(msg, /tunnel\.max_window/);
    assert.match(msg, hint);
  }
  const msg = refusal(() =>
    connectConfigFromText('gateway: g\nssh_key: /k\nmax_window: 1KiB\n', '/etc/connect.yaml', {}),
  );
  assert.match(msg, /max_window/);
  assert.match(msg, hint);
});
