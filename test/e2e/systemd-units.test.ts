/**
 * The systemd units in deploy/systemd/: `systemd-analyze verify` finds nothing to complain about
 * and `systemd-analyze security` rates their exposure below a bound. Skipped where systemd-analyze
 * is not installed. ExecStart names /usr/local/bin/tether, which verify wants to exist: the check
 * runs on a copy that starts this checkout's binary with this node instead.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { DEFAULT_DRAIN_TIMEOUT } from '../../src/config/connect.js';
import { BIN, ROOT, run, tempDir } from '../helpers/util.js';

const analyze = await run('systemd-analyze', ['--version']).catch(() => undefined);
const available = analyze?.code === 0;

/** Highest exposure accepted (systemd's scale: 0 safest … 10; "OK" is below 4). */
const MAX_EXPOSURE: Record<string, number> = {
  'tether-gateway.service': 2.0,
  'tether-connector.service': 2.0,
};

describe('systemd units', { skip: available ? false : 'systemd-analyze is not installed' }, () => {
  for (const unit of Object.keys(MAX_EXPOSURE)) {
    test(`${unit}: verify is clean and the exposure is at most ${MAX_EXPOSURE[unit]}`, async (t) => {
      const dir = tempDir('tether-units-');
      const text = readFileSync(join(ROOT, 'deploy/systemd', unit), 'utf8');
      assert.match(text, /^ExecStart=\/usr\/local\/bin\/tether /m);
      const file = join(dir, unit);
      writeFileSync(file, text.replace('/usr/local/bin/tether', `${process.execPath} ${BIN}`));
      const verify = await run('systemd-analyze', ['verify', file]);
      assert.equal(verify.code, 0, verify.stderr);
      assert.equal(verify.stderr.trim(), '', 'no warning');
      const sec = await run('systemd-analyze', ['security', '--offline=yes', '--no-pager', file]);
      const m = /Overall exposure level for \S+: (\d+\.\d+)/.exec(sec.stdout + sec.stderr);
      assert.ok(m, sec.stdout + sec.stderr);
      const score = Number(m[1]);
      t.diagnostic(`${unit}: exposure ${score}`);
      assert.ok(score <= MAX_EXPOSURE[unit]!, `${unit}: exposure ${score}`);
      for (const d of [
        'NoNewPrivileges=yes',
        'ProtectSystem=strict',
        'PrivateTmp=yes',
        'CapabilityBoundingSet=',
      ]) {
        assert.match(text, new RegExp(`^${d}$`, 'm'), `${unit} sets ${d}`);
      }
      assert.match(text, /^User=tether/m, 'a dedicated user');
      assert.match(text, /^ExecReload=/m);
    });
  }

  test('tether-gateway.service: TimeoutStopSec outlasts the default drain_timeout (30 s)', () => {
    const text = readFileSync(join(ROOT, 'deploy/systemd/tether-gateway.service'), 'utf8');
    const stop = Number(/^TimeoutStopSec=(\d+)$/m.exec(text)?.[1]);
    assert.ok(stop > 30, `TimeoutStopSec=${stop}`);
  });

  test('tether-connector.service: TimeoutStopSec outlasts the default drain_timeout (5 s)', () => {
    const text = readFileSync(join(ROOT, 'deploy/systemd/tether-connector.service'), 'utf8');
    const stop = Number(/^TimeoutStopSec=(\d+)$/m.exec(text)?.[1]);
    assert.ok(stop * 1000 > DEFAULT_DRAIN_TIMEOUT, `TimeoutStopSec=${stop}`);
  });
});
