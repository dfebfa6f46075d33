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
 *
 * The same line sets two of glibc's malloc settings for node, which glibc reads only when a
 * process starts (`env -S NAME=value ... node`):
 *
 * - `MALLOC_TRIM_THRESHOLD_=16777216`: keep up to 16 MiB free at the top of the heap instead of
 *   128 KiB. Every socket read and every SSH packet is a fresh 32-64 KiB malloc, and a scavenge
 *   frees thousands at once; with the default, glibc handed the freed top back to the kernel
 *   (`brk`) and the next packets faulted the same pages in again, zeroed by the kernel. A gateway
 *   in that state made some 2,200 `brk` calls and 70,000-100,000 minor page faults per GB and
 *   spent twice the CPU per GB; whether a process fell into it depended on what it had freed
 *   before (glibc raises the threshold after freeing a large mmap()ed block, the 4 MiB buffer of
 *   src/bin/gc-tuning.ts, which left rounds in it). With the setting: about 10 `brk` calls and a
 *   few hundred faults per GB in every round (docs/performance.md, "glibc's heap top").
 * - `MALLOC_MMAP_THRESHOLD_=1048576`: setting the first one turns glibc's moving thresholds off,
 *   and this keeps blocks under 1 MiB in the heap rather than in a mapping of their own each.
 *
 * A C library other than glibc (musl) ignores both; an operator's own values are replaced.
 */

/** What a shebang line like the binary's sets: environment variables, then node's flags. */
export interface Shebang {
  env: Record<string, string>;
  flags: string[];
}

/**
 * Reads a shebang line like the binary's: `#!/usr/bin/env [-S] [NAME=value ...] node [--flag ...]`.
 * Anything else is refused by name.
 */
export function parseShebang(line: string): Shebang {
  const m =
    /^#!\/usr\/bin\/env(?: -S)?((?: +[A-Z][A-Z0-9_]*=[^\s=]*)*) +node((?: +--[a-z0-9-]+(?:=\S+)?)*) *$/.exec(
      line,
    );
  if (!m) throw new Error(`not a node shebang line: ${JSON.stringify(line.slice(0, 120))}`);
  const words = (s: string) => (s.trim() === '' ? [] : s.trim().split(/ +/));
  const env: Record<string, string> = {};
  for (const a of words(m[1]!)) {
    const i = a.indexOf('=');
    env[a.slice(0, i)] = a.slice(i + 1);
  }
  return { env, flags: words(m[2]!) };
}

/** The first line of a file (a script's shebang). */
export function firstLine(file: string): string {
  const text = readFileSync(file, 'utf8');
  return text.slice(0, text.indexOf('\n'));
}

/** What a built or source `tether` entry file starts node with (environment and flags), read from its first line. */
export function shebangOf(entryFile: string): Shebang {
  return parseShebang(firstLine(entryFile));
}
