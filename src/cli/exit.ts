import { isTetherError } from '../errors/index.js';

/** Exit codes: 0 ok, 1 failure, 2 usage / bad input, 3 not found, 4 conflict, 5 unavailable, 6 unauthorized. */
export function exitCodeFor(e: unknown): number {
  if (!isTetherError(e)) return 1;
  if (e.status === 400) return 2;
  if (e.status === 404) return 3;
  if (e.status === 409) return 4;
  if (e.status === 401 || e.status === 403) return 6;
  if (e.status === 503) return 5;
  return 1;
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
