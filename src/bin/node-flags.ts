import { readFileSync } from 'node:fs';

/*
 * The `tether` binary's first line (src/bin/tether.ts) starts node with the flags it runs under.
 * They must be on node's command line (V8 reads them when it sets up the heap, before any of our code runs, and node does
 * not accept them in NODE_OPTIONS), so the binary carries them in its shebang; `env -S` splits
 * them (GNU coreutils 8.30 and later, as in every Debian-based image).
 *
 * `--initial-old-space-size=64`: V8 then also keeps the old generation's allocation limit at
 * 64 MiB or more ("skip full GCs below that threshold"). Without it, once a gateway or connector
 * had been idle for a while, V8 set that limit close to the live heap (17 MiB in an idle gateway,
 * limit 26 MiB), and the next bulk transfer over a long link ran one mark-compact per external
 * memory pressure scavenge, about seven a second, for as long as it lasted: twice the CPU per GB
 * of the same transfer started right after another one (docs/performance.md, "After an idle
 * spell"). 48 MiB cured the connector (13 MiB live) but not the gateway. The heap is collected
 * as before once it is quiet (src/tunnel/heap-trim.ts, and V8's memory reducer), so the idle
 * RSS does not change.
 */

/** The node flags of a shebang line like the binary's (none for a plain `#!/usr/bin/env node`). */
export function flagsOfShebang(line: string): string[] {
  const m = /^#!\/usr\/bin\/env(?: -S)? node((?: +--[a-z0-9-]+(?:=\S+)?)*) *$/.exec(line);
  if (!m) throw new Error(`not a node shebang line: ${JSON.stringify(line.slice(0, 120))}`);
  return m[1]!.trim() === '' ? [] : m[1]!.trim().split(/ +/);
}

/** The first line of a file (a script's shebang). */
export function firstLine(file: string): string {
  const text = readFileSync(file, 'utf8');
  return text.slice(0, text.indexOf('\n'));
}

/** The node flags a built or source `tether` entry file runs under, read from its first line. */
export function nodeFlagsOf(entryFile: string): string[] {
  return flagsOfShebang(firstLine(entryFile));
}
