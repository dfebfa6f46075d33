#!/usr/bin/env -S MALLOC_TRIM_THRESHOLD_=16777216 MALLOC_MMAP_THRESHOLD_=1048576 node --initial-old-space-size=64
// The environment and node flags on the line above are part of how the binary runs
// (src/bin/node-flags.ts says why); `npm start`, the tests and the bench start it with the same ones.
// first: process settings made before any other module runs (src/bin/early.ts)
import './early.js';
import { CommanderError } from 'commander';
import { exitCodeFor, printError } from '../cli/exit.js';
import { buildProgram } from '../cli/program.js';

const program = buildProgram();
try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    process.exitCode = e.exitCode === 0 ? 0 : 2;
  } else {
    printError(e);
    process.exitCode = exitCodeFor(e);
  }
}
