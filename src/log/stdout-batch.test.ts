import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createLogger, type LogEvent, onLogEvents, withoutRedaction } from './index.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-log-batch-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const INDEX = new URL('./index.ts', import.meta.url).href;

/** Runs `body` in a node process whose logger writes to stdout (a pipe); returns that process. */
function child(body: string): { proc: ChildProcess; out: () => string; exited: Promise<number | null> } {
  const script = `import { createLogger } from ${JSON.stringify(INDEX)};
const log = createLogger({ level: 'info', pretty: false });
${body}`;
  const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  proc.stderr!.resume();
  const exited = new Promise<number | null>((r) => proc.once('close', (code) => r(code)));
  return { proc, out: () => out, exited };
}

const lines = (text: string) =>
  text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { n?: number; msg?: string });

describe('stdout log lines are batched per event-loop turn, and none is lost', () => {
  test('every line logged just before process.exit() is written, in order, each whole', async () => {
    const c = child(`for (let n = 0; n < 3000; n++) log.info({ event: 'x.y', n }, 'line ' + n);
process.exit(0);`);
    assert.equal(await c.exited, 0);
    const got = lines(c.out());
    assert.equal(got.length, 3000);
    assert.deepEqual(
      got.map((l) => l.n),
      Array.from({ length: 3000 }, (_, i) => i),
    );
  });

  test('a line reaches stdout while the process keeps running (no wait for a buffer to fill)', async () => {
    const c = child(`log.info({ event: 'x.y', n: 1 }, 'alive');
setInterval(() => {}, 1000);`);
    try {
      const deadline = Date.now() + 20_000;
      while (!c.out().includes('"msg":"alive"')) {
        assert.ok(Date.now() < deadline, `no line within 20 s: ${c.out()}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(c.proc.exitCode, null, 'the process is still running');
    } finally {
      c.proc.kill('SIGKILL');
      await c.exited;
    }
  });
});

describe('withoutRedaction: the same line, without the redaction pass', () => {
  test('a record of plain fields comes out as from the parent, and event listeners still see it', () => {
    const fileA = join(dir, 'a.json');
    const fileB = join(dir, 'b.json');
    const fields = {
      event: 'connection.closed',
      tenant: 'acme',
      label: 'g/r',
      port: 2201,
      source: '127.0.0.1:5000',
      bytes_in: 3,
    };
    for (const [file, fast] of [
      [fileA, false],
      [fileB, true],
    ] as const) {
      const root = createLogger({ level: 'info', destination: file, pretty: false });
      const seen: LogEvent[] = [];
      onLogEvents(root, (e) => seen.push(e));
      const log = root.child({ component: 'broker' });
      (fast ? withoutRedaction(log) : log).info({ ...fields }, 'connection closed');
      assert.equal(seen.length, 1);
      assert.equal(seen[0]!.fields.event, 'connection.closed');
      assert.equal(seen[0]!.bindings.component, 'broker');
    }
    const strip = (t: string) => JSON.parse(t.replace(/"time":"[^"]*",?/, '').replace(/"pid":\d+,?/, ''));
    assert.deepEqual(strip(readFileSync(fileB, 'utf8')), strip(readFileSync(fileA, 'utf8')));
  });

  test('the parent logger keeps redacting', () => {
    const file = join(dir, 'c.json');
    const root = createLogger({ level: 'info', destination: file, pretty: false });
    withoutRedaction(root);
    root.info({ token: 'sekrit', nested: { password: 'sekrit' } }, 'still redacted');
    const text = readFileSync(file, 'utf8');
    assert.ok(!text.includes('sekrit'), text);
  });
});
