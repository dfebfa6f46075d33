import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { FakeClock } from '../../../../test/helpers/core.js';
import { tempDir } from '../../../../test/helpers/util.js';
import { silentLogger } from '../../../log/index.js';
import { type CommandRunner, CommandSecret, runCommand } from './command.js';

const H = 3_600_000;

/** A runner that answers from a script of outcomes. */
function scripted(outcomes: Array<string | Error>): CommandRunner & { calls: number } {
  const r = (async () => {
    r.calls++;
    const o = outcomes.shift() ?? new Error('no more outcomes');
    if (o instanceof Error) throw o;
    return o;
  }) as unknown as CommandRunner & { calls: number };
  r.calls = 0;
  return r;
}

const settle = () => new Promise((r) => setImmediate(r));

describe('http-proxy upstream credential from a command', () => {
  it('runs at start and again every refresh', async () => {
    const clock = new FakeClock();
    const runner = scripted(['token-1', 'token-2']);
    const s = new CommandSecret(
      { argv: ['x'], refresh: 8 * H, retries: 2, retryDelay: 1_000, timeout: 5_000 },
      clock,
      silentLogger(),
      runner,
    );
    await s.start();
    assert.equal(s.current(), 'token-1');
    clock.advance(8 * H - 1);
    await settle();
    assert.equal(runner.calls, 1);
    clock.advance(1);
    await settle();
    assert.equal(s.current(), 'token-2');
    s.stop();
  });

  it('retries a failed run, then keeps the last good value and tries again sooner', async () => {
    const clock = new FakeClock();
    const runner = scripted([
      'good',
      new Error('exited with 1'),
      new Error('exited with 1'),
      new Error('exited with 1'),
      'fresh',
    ]);
    const s = new CommandSecret(
      { argv: ['x'], refresh: 8 * H, retries: 2, retryDelay: 1_000, timeout: 5_000 },
      clock,
      silentLogger(),
      runner,
    );
    await s.start();
    clock.advance(8 * H);
    await settle();
    assert.equal(runner.calls, 2);
    assert.equal(s.current(), 'good');
    clock.advance(1_000);
    await settle();
    assert.equal(runner.calls, 3);
    clock.advance(2_000);
    await settle();
    assert.equal(runner.calls, 4);
    assert.equal(s.current(), 'good', 'the last good value stays after every retry failed');
    assert.equal(s.runs, 2);
    clock.advance(300_000);
    await settle();
    assert.equal(s.current(), 'fresh');
    s.stop();
  });

  it('answers 503 while it has never succeeded', async () => {
    const clock = new FakeClock();
    const s = new CommandSecret(
      { argv: ['x'], refresh: H, retries: 0, retryDelay: 1_000, timeout: 5_000 },
      clock,
      silentLogger(),
      scripted([new Error('aws: command not found')]),
    );
    await s.start();
    assert.throws(() => s.current(), /has not succeeded yet: aws: command not found/);
    s.stop();
  });

  it('runs a real command: trimmed stdout, exit codes, timeouts', async () => {
    const dir = tempDir();
    const script = join(dir, 'cred.sh');
    writeFileSync(script, '#!/bin/sh\necho "  secret-value  "\n');
    chmodSync(script, 0o755);
    const signal = new AbortController().signal;
    assert.equal(await runCommand([script], 5_000, signal), 'secret-value');
    await assert.rejects(
      runCommand(['/bin/sh', '-c', 'echo oops >&2; exit 3'], 5_000, signal),
      /exited with 3: oops/,
    );
    await assert.rejects(runCommand(['/bin/sh', '-c', 'true'], 5_000, signal), /printed nothing/);
    await assert.rejects(runCommand(['/no/such/command'], 5_000, signal), /command not found/);
    await assert.rejects(runCommand(['sleep', '5'], 200, signal), /killed after 200 ms/);
  });
});
