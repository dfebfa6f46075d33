import { join } from 'node:path';
import { type Child, ROOT, start } from './procs.js';

const RELAY = join(ROOT, 'test/helpers/delay-relay.ts');

/**
 * A delay relay of our own (test/helpers/delay-relay.ts) in its own process, in front of `to`:
 * `delayMs` one way and `rateMbit` per direction. Resolves with the port it listens on.
 */
export async function relay(
  to: number,
  delayMs: number,
  rateMbit: number,
): Promise<{ port: number; child: Child }> {
  const child = start(process.execPath, [
    '--import',
    'tsx',
    RELAY,
    '--to',
    `127.0.0.1:${to}`,
    '--delay',
    String(delayMs),
    '--rate',
    String(rateMbit),
  ]);
  const m = await child.wait(/\{"port":(\d+)\}/, 60_000);
  return { port: Number(m[1]), child };
}
