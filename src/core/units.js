// @ts-check
/**
 * Units: bytes, rates and durations, parsed and formatted in one place for the gateway, the CLI
 * and the dashboard. Written as plain JavaScript with JSDoc types so that the dashboard (static
 * ES modules, a CSP that allows only its own scripts, no build step) loads this very file, and
 * tsc checks it like the TypeScript around it. Pure functions: no imports, no I/O.
 *
 * Written with decimal prefixes (k = 1000, M = 10^6 …), as the CLI reads them: "10MB/s",
 * "500GB/month". Binary prefixes (KiB = 1024) and bits ("100Mbit/s", "100Mbps") are read too,
 * never written.
 */

/** @type {Record<string, number>} */
const PREFIX = {
  '': 1,
  k: 1e3,
  m: 1e6,
  g: 1e9,
  t: 1e12,
  p: 1e15,
  ki: 1024,
  mi: 1024 ** 2,
  gi: 1024 ** 3,
  ti: 1024 ** 4,
  pi: 1024 ** 5,
};

const AMOUNT = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*(?:\/\s*([A-Za-z0-9 ]+?))?\s*$/;

/**
 * "10MB/s" → { amount: 10, unit: 'MB', per: 's' }; "1.5 GB" → { amount: 1.5, unit: 'GB' };
 * null when the text is not a number with an optional unit and "/period".
 * @param {string} text
 * @returns {{ amount: number, unit: string, per: string | undefined } | null}
 */
export function splitAmount(text) {
  const m = AMOUNT.exec(text);
  if (!m) return null;
  return { amount: Number(m[1]), unit: m[2] ?? '', per: m[3] };
}

/**
 * "MB" → 1e6 bytes, "KiB" → 1024, "Mbit"/"Mbps" → 125000 (bits when the unit says so).
 * Throws an Error whose message names the problem ("unknown unit", an ambiguous "mb").
 * @param {string} unit
 * @param {boolean} allowBits
 * @returns {{ factor: number, bits: boolean }}
 */
export function unitFactor(unit, allowBits) {
  let prefix;
  let bits = false;
  if (/bps$/i.test(unit)) {
    prefix = unit.slice(0, -3);
    bits = true;
  } else if (/bits?$/i.test(unit)) {
    prefix = unit.replace(/bits?$/i, '');
    bits = true;
  } else if (unit.endsWith('B')) prefix = unit.slice(0, -1);
  else if (unit === '') prefix = '';
  else if (/^([kmgtp]i?)b?$/i.test(unit)) {
    throw new Error(
      `the unit "${unit}" is ambiguous: write ${unit.replace(/b$/, '')}B for bytes or ${unit.replace(/b$/, '')}bit for bits`,
    );
  } else throw new Error(`unknown unit "${unit}"`);
  const f = PREFIX[prefix.toLowerCase()];
  if (f === undefined) throw new Error(`unknown unit "${unit}"`);
  if (bits && !allowBits) throw new Error('give an amount in bytes (B, KB, MB, GB, TB)');
  return { factor: bits ? f / 8 : f, bits };
}

export const BYTES_HINT = 'use an amount such as 500GB, 10MB or 512KiB';

/**
 * An amount of bytes: "500GB", "10 MB", "512KiB", "42" → whole bytes.
 * Throws an Error with the problem and an example.
 * @param {string} text
 * @returns {number}
 */
export function parseBytes(text) {
  const a = splitAmount(text.trim());
  if (!a || a.per !== undefined) throw new Error(BYTES_HINT);
  let factor;
  try {
    factor = unitFactor(a.unit, false).factor;
  } catch (e) {
    throw new Error(`${/** @type {Error} */ (e).message}; ${BYTES_HINT}`);
  }
  return Math.round(a.amount * factor);
}

export const RATE_HINT = 'use a rate such as 10MB/s, 500KB/s or 100Mbit/s (0 or "off" for no cap)';

/**
 * A rate: "10MB/s", "512KiB/s", "100Mbit/s", "100Mbps" → bytes per second (0 stays 0; any other
 * amount is at least 1). Throws an Error with the problem and an example.
 * @param {string} text
 * @returns {number}
 */
export function parseRate(text) {
  const a = splitAmount(text.trim());
  if (!a) throw new Error(RATE_HINT);
  let factor;
  try {
    factor = unitFactor(a.unit, true).factor;
  } catch (e) {
    throw new Error(`${/** @type {Error} */ (e).message}; ${RATE_HINT}`);
  }
  const perSecond = /bps$/i.test(a.unit) ? a.per === undefined : /^(s|sec|second)$/i.test(a.per ?? '');
  if (!perSecond) {
    throw new Error(
      a.per === undefined ? `a rate needs "/s"; ${RATE_HINT}` : `"/${a.per}" is not per second; ${RATE_HINT}`,
    );
  }
  const bytes = a.amount * factor;
  return bytes === 0 ? 0 : Math.max(1, Math.round(bytes));
}

const BYTE_UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];

/**
 * 500000000000 → "500 GB"; 1536 → "1.54 kB"; 12 → "12 B": decimal units, three significant
 * digits. The text reads back with parseBytes.
 * @param {number} n
 * @returns {string}
 */
export function formatBytes(n) {
  let v = Number(n) || 0;
  let i = 0;
  while (v >= 1000 && i < BYTE_UNITS.length - 1) {
    v /= 1000;
    i++;
  }
  const text = i === 0 ? String(Math.round(v)) : String(Number(v.toPrecision(3)));
  return `${text} ${BYTE_UNITS[i]}`;
}

/**
 * Bytes per second → "10 MB/s" (reads back with parseRate).
 * @param {number} n
 * @returns {string}
 */
export function formatRate(n) {
  return `${formatBytes(n)}/s`;
}

/** @type {Record<string, number>} */
const DURATION_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/**
 * "500ms", "60s", "5m", "8h", "2d" → milliseconds; a bare number is seconds. null when the
 * value is not a duration.
 * @param {string | number} v
 * @returns {number | null}
 */
export function parseDuration(v) {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? v * 1000 : null;
  const m = DURATION.exec(v.trim());
  if (!m) return null;
  return Number(m[1]) * (DURATION_MS[m[2] ?? ''] ?? 0);
}

/**
 * Milliseconds → "40 s", "15 minutes", "3 hours" (rounded up), for messages.
 * @param {number} ms
 * @returns {string}
 */
export function formatDuration(ms) {
  const s = Math.ceil(ms / 1000);
  if (s < 120) return `${s} s`;
  const m = Math.ceil(s / 60);
  return m < 120 ? `${m} minutes` : `${Math.ceil(m / 60)} hours`;
}

/**
 * A traffic period → "per month", "per day", "per 30 days" ("month" or "<n>d", as the gateway
 * stores it).
 * @param {string | null | undefined} p
 * @returns {string}
 */
export function formatPeriod(p) {
  if (!p || p === 'month') return 'per month';
  const n = Number(p.slice(0, -1));
  return n === 1 ? 'per day' : `per ${n} days`;
}
