import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createLogger } from './index.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-pretty-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('pretty output for a terminal', () => {
  test('is formatted in this thread: the line is there as soon as the call returns, secrets redacted', () => {
    // (a pino transport would format it later, in a worker thread: a second V8 isolate)
    const file = join(dir, 'pretty.log');
    const log = createLogger({ level: 'info', destination: file, pretty: true });
    log.info({ event: 'demo.event', tenant: 'acme', password: 'hunter2' }, 'hello there');
    const text = readFileSync(file, 'utf8');
    assert.match(text, /INFO.*hello there/);
    assert.match(text, /event.*"demo\.event"/);
    assert.match(text, /tenant.*"acme"/);
    assert.match(text, /\[redacted\]/);
    assert.doesNotMatch(text, /hunter2/);
    assert.doesNotMatch(text, /^\{"level"/m); // not JSON
  });
});
