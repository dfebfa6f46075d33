import { setFlagsFromString } from 'node:v8';

/** The V8 flag the data path turns off (see `steadyDataPathGc`). */
export const CONCURRENT_MARKING_OFF = '--no-concurrent-marking';

/**
 * Turns off V8's concurrent marking in a process that moves tunnel data (the gateway and the
 * connector), unless whoever started node chose for themselves (a `--concurrent-marking` or
 * `--no-concurrent-marking` flag on node's command line or in NODE_OPTIONS). Returns whether it
 * changed the flag.
 *
 * Why: every SSH packet and every socket read is a fresh 32-64 KiB ArrayBuffer outside V8's heap.
 * Once enough of them are outstanding V8 reports "external memory pressure" and starts an
 * incremental mark-compact whose marking runs on background threads. On a machine whose cores are
 * busy (two cores shared by the tunnel, its peers and everything else) those threads wait for a
 * core, marking takes 50-200 ms instead of a few, every buffer allocated meanwhile stays alive
 * until it ends, and the next pressure point comes at once: the connector ran 10-25 mark-compacts
 * per 3-second bulk round, and the rounds that hit this cost twice the CPU per GB of those that did
 * not (docs/performance.md, "A steady data path"). Marking on the main thread (incremental, in
 * steps) never waits for another thread; with it the same rounds ran without a single
 * mark-compact, the buffers die young in scavenges, and the CPU per GB stays at the low figure.
 *
 * Call it once, early in the process (before the data path runs). Node documents changing V8
 * flags after start as unspecified; this one is read each time marking starts, and a process that
 * set it went through dozens of incremental mark-compacts without trouble (src/tunnel/gc-tuning.test.ts).
 */
export function steadyDataPathGc(
  o: { execArgv?: readonly string[]; nodeOptions?: string; set?: (flags: string) => void } = {},
): boolean {
  raiseMallocTrimThreshold();
  const given = [
    ...(o.execArgv ?? process.execArgv),
    ...(o.nodeOptions ?? process.env.NODE_OPTIONS ?? '').split(/\s+/),
  ];
  if (given.some((a) => /^--(no-)?concurrent[-_]marking(=|$)/.test(a))) return false;
  (o.set ?? setFlagsFromString)(CONCURRENT_MARKING_OFF);
  return true;
}

/** The size of the one buffer `raiseMallocTrimThreshold` allocates and drops (4 MiB). */
export const MALLOC_THRESHOLD_BUMP = 4 * 1024 * 1024;

/**
 * Makes glibc keep up to 8 MiB of freed memory at the top of its heap instead of handing it back
 * to the kernel after every garbage collection. Each packet and socket read is a 32-64 KiB
 * malloc; a scavenge frees thousands at once, glibc trims the heap's top above 128 KiB
 * (M_TRIM_THRESHOLD) and the next packets fault the same pages in again, zeroed by the kernel:
 * 30,000-55,000 minor page faults per GB in the connector, against OpenSSH's few hundred to few
 * thousand. glibc raises its trim threshold to twice the size of the largest mmap()ed block freed
 * so far (its "dynamic mmap threshold"); one 4 MiB buffer (above the 128 KiB mmap threshold)
 * allocated and dropped here, untouched, costs no resident memory and raises it to 8 MiB once the
 * next scavenge frees it. A C library without that rule (musl) just frees the buffer.
 *
 * This is the fallback for a process started without the binary's shebang (`node
 * dist/bin/tether.js`): 8 MiB still left bulk rounds in which the gateway trimmed and faulted
 * its heap top thousands of times per GB, so the binary sets glibc's thresholds itself before node
 * starts (`MALLOC_TRIM_THRESHOLD_`, src/bin/node-flags.ts). With those set, glibc's thresholds no
 * longer move and this buffer is just freed.
 */
export function raiseMallocTrimThreshold(): void {
  Buffer.allocUnsafeSlow(MALLOC_THRESHOLD_BUMP);
}
