import { isTetherError } from '../errors/index.js';

/**
 * The process exit code for an error: the catalog's (src/errors/catalog.ts; 0 ok, 1 failure,
 * 2 usage / bad input, 3 not found, 4 conflict, 5 unavailable, 6 unauthorized); 1 for anything
 * that is not a TetherError.
 */
export function exitCodeFor(e: unknown): number {
  return isTetherError(e) ? e.exit : 1;
}

/** Prints "tether: <message>" (and field details) to stderr. */
export function printError(e: unknown): void {
  if (isTetherError(e)) {
    process.stderr.write(`tether: ${e.message}\n`);
    for (const d of e.details) {
      if (!e.message.includes(d.message))
        process.stderr.write(`  ${d.path ? `${d.path}: ` : ''}${d.message}\n`);
    }
  } else if (e instanceof Error) {
    process.stderr.write(`tether: ${e.message}\n`);
    if (process.env.TETHER_DEBUG) process.stderr.write(`${e.stack}\n`);
  } else {
    process.stderr.write(`tether: ${String(e)}\n`);
  }
}
