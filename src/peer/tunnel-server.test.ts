import assert from 'node:assert/strict';
import { test } from 'node:test';
import ssh2 from 'ssh2';
import { generateHostKey } from './tunnel-server.js';

test('host keys always parse (ssh2 writes an unreadable ed25519 key about 1 in 256 times)', () => {
  for (let i = 0; i < 1000; i++) {
    const parsed = ssh2.utils.parseKey(generateHostKey());
    assert.ok(!(parsed instanceof Error), `key ${i}: ${parsed instanceof Error ? parsed.message : ''}`);
  }
});
