#!/usr/bin/env node
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
