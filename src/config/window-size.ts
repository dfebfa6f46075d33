import { z } from 'zod';

/** ssh2's fixed (upstream) channel window, the smallest ceiling an adaptive window may have. */
export const MIN_MAX_WINDOW = 2 * 1024 * 1024;
/**
 * Default ceiling of a channel's adaptive receive window: 1 Gbit/s over a 200 ms round trip is
 * 25 MB in flight; the window is refilled after a quarter of it is consumed, so it needs 4/3 of
 * that: 32 MiB.
 */
export const DEFAULT_MAX_WINDOW = 32 * 1024 * 1024;
const MAX_MAX_WINDOW = 1024 * 1024 * 1024;

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

/** Bytes from a number or "32MiB", "25MB", "2097152"; null when it is neither. */
export function parseByteSize(v: unknown): number | null {
  if (typeof v === 'number') return Number.isInteger(v) ? v : null;
  if (typeof v !== 'string') return null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) return null;
  return Math.round(Number(m[1]) * unit);
}

/** A channel window ceiling: bytes or text ("32MiB"), 2 MiB to 1 GiB. */
export const windowSize = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const n = parseByteSize(v);
  if (n === null || n < MIN_MAX_WINDOW || n > MAX_MAX_WINDOW) {
    ctx.addIssue({
      code: 'custom',
      message: `${JSON.stringify(v)} is not a window size (use bytes or e.g. "32MiB"; from 2MiB to 1GiB)`,
    });
    return z.NEVER;
  }
  return n;
});
