import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { FakeClock } from '../../../../test/helpers/core.js';
import { tempDir } from '../../../../test/helpers/util.js';
import { silentLogger } from '../../../log/index.js';
import { type CommandRunner, CommandSecret } from './command.js';
import { FileSecret } from './file.js';
import type { SecretShare } from './types.js';

/** Two workers' shares of one route's credential, passed over at once (the primary's relay). */
function pair(): [SecretShare, SecretShare] {
  const fns: Array<Set<(v: string, at: number) => void>> = [new Set(), new Set()];
  const share = (me: number): SecretShare => ({
    publish: (v, at) => {
      for (const fn of fns[1 - me]!) fn(v, at);
    },
    onValue: (fn) => {
      fns[me]!.add(fn);
      return () => fns[me]!.delete(fn);
    },
  });
  return [share(0), share(1)];
}

const H = 3_600_000;

describe('an upstream credential under workers', () => {
  it('a file: the newest version one worker read is every worker’s last good value when the file goes missing', async () => {
    const dir = tempDir();
    const file = join(dir, 'cred');
    writeFileSync(file, 'v1');
    const [sa, sb] = pair();
    const a = new FileSecret(file, silentLogger(), undefined, sa);
    const b = new FileSecret(file, silentLogger(), undefined, sb);
    await a.start();
    await b.start();
    assert.equal(a.current(), 'v1');
    writeFileSync(file, 'v2-newer');
    assert.equal(b.current(), 'v2-newer', 'read by the second worker only');
    rmSync(file);
    assert.equal(a.current(), 'v2-newer', 'the first keeps the newest good value, not its own v1');
    assert.equal(b.current(), 'v2-newer');
    a.stop();
    b.stop();
  });

  it('a command: one worker’s run is the others’ value, and puts off their next run by a refresh', async () => {
    const clock = new FakeClock();
    const [sa, sb] = pair();
    const runner = (outcomes: string[]) => {
      const r = (async () => {
        r.calls++;
        return outcomes.shift() ?? 'late';
      }) as unknown as CommandRunner & { calls: number };
      r.calls = 0;
      return r;
    };
    const ra = runner(['a-1']);
    const rb = runner(['b-1', 'b-2']);
    const opts = { argv: ['x'], refresh: 8 * H, retries: 0, retryDelay: 1_000, timeout: 5_000 };
    const a = new CommandSecret(opts, clock, silentLogger(), ra, undefined, sa);
    await a.start();
    clock.advance(1_000);
    const b = new CommandSecret(opts, clock, silentLogger(), rb, undefined, sb);
    await b.start();
    assert.equal(a.current(), 'b-1', 'the newer run, made by the other worker');
    // a's own run was due 8 h after its start; b's value put it off to 8 h after b's run
    clock.advance(8 * H - 1_000);
    await new Promise((r) => setImmediate(r));
    assert.equal(ra.calls, 1, 'a did not run again');
    clock.advance(1_000);
    await new Promise((r) => setImmediate(r));
    assert.equal(rb.calls + ra.calls, 3, 'one more run between them');
    assert.equal(a.current(), b.current());
    a.stop();
    b.stop();
  });
});
