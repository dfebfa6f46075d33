/**
 * Traffic policy: what a tenant's (or one repository's) limits are and how an operator writes
 * them. Bandwidth caps each way, a cap on concurrent connections, a monthly or rolling traffic
 * quota, and how new connections are spread over a repository's connectors; the parsers the
 * CLI and the admin API use, and the views the admin API shows. Pure: no store, no clock.
 */
import { TetherError } from '../../errors/index.js';
import { parseRate as parseRateText, RATE_HINT, splitAmount, unitFactor } from '../units.js';

export const BALANCES = ['round-robin', 'least-connections'] as const;
export type Balance = (typeof BALANCES)[number];

export const MAX_RATE = 1e12; // 1 TB/s
export const MAX_TRAFFIC = 9e15; // 9 PB: exact as a double
export const MAX_CONNECTIONS = 1_000_000;
export const MAX_PERIOD_DAYS = 366;

/** The limits of a tenant or of one repository; null = no limit. */
export interface Limits {
  bandwidthUp: number | null;
  bandwidthDown: number | null;
  maxConnections: number | null;
  trafficLimit: number | null;
  /** "month" or "<n>d". */
  trafficPeriod: string | null;
}

/** A change: undefined keeps a value, null removes the limit. */
export type LimitsPatch = { [K in keyof Limits]?: Limits[K] } & { balance?: Balance | null };

/** A tenant's limits and its balance. */
export interface Policy extends Limits {
  balance: Balance;
}

export const NO_LIMITS: Limits = {
  bandwidthUp: null,
  bandwidthDown: null,
  maxConnections: null,
  trafficLimit: null,
  trafficPeriod: null,
};

export function invalid(what: string, value: unknown, hint: string): TetherError {
  const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 60)) : JSON.stringify(value);
  return new TetherError('LIMIT_INVALID', `invalid ${what} ${shown}: ${hint}`, { status: 400 });
}

const OFF = new Set(['off', 'none', 'unlimited', 'no']);

/**
 * A bandwidth: bytes per second as a number, or text such as "10MB/s", "512KiB/s",
 * "100Mbit/s", "100Mbps". 0, "0", "off" → null (no cap). Decimal prefixes are powers of
 * 1000, binary ones (KiB, MiB) powers of 1024.
 */
export function parseRate(value: unknown, what = 'bandwidth'): number | null {
  if (value === null) return null;
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw invalid(what, value, RATE_HINT);
    if (value > MAX_RATE) throw invalid(what, value, 'at most 1 TB/s');
    return value === 0 ? null : Math.max(1, Math.round(value));
  }
  if (typeof value !== 'string') throw invalid(what, value, RATE_HINT);
  const text = value.trim();
  if (OFF.has(text.toLowerCase()) || /^0+(\.0*)?$/.test(text)) return null;
  let bytes: number;
  try {
    bytes = parseRateText(text);
  } catch (e) {
    throw invalid(what, value, (e as Error).message);
  }
  if (bytes === 0) return null;
  if (bytes > MAX_RATE) throw invalid(what, value, 'at most 1 TB/s');
  return bytes;
}

const TRAFFIC_HINT = 'use an amount per period such as 500GB/month or 10GB/30d ("off" for no quota)';

/** "month", "monthly" → "month"; "30d", "30 days", "week" → "<n>d". */
export function parsePeriod(value: string): string {
  const p = value.trim().toLowerCase();
  if (p === 'month' || p === 'mo' || p === 'monthly') return 'month';
  if (p === 'day' || p === 'daily') return '1d';
  if (p === 'week' || p === 'weekly') return '7d';
  const m = /^(\d+)\s*(?:d|days?)$/.exec(p);
  if (m) {
    const n = Number(m[1]);
    if (n >= 1 && n <= MAX_PERIOD_DAYS) return `${n}d`;
    throw new Error(`a rolling period is 1 to ${MAX_PERIOD_DAYS} days, not ${n}`);
  }
  throw new Error(`unknown period "${value.trim()}": use month or a number of days such as 30d`);
}

/**
 * A traffic quota: "500GB/month", "10GB/30d", "1TB/week", or { limit: bytes, period }.
 * 0, "0", "off" → null (no quota).
 */
export function parseTraffic(value: unknown): { limit: number; period: string } | null {
  if (value === null) return null;
  const what = 'traffic quota';
  if (typeof value === 'object' && !Array.isArray(value)) {
    const o = value as { limit?: unknown; period?: unknown };
    if (typeof o.limit !== 'number' || !Number.isInteger(o.limit) || o.limit < 0) {
      throw invalid(what, value, 'limit must be a whole number of bytes');
    }
    if (o.limit > MAX_TRAFFIC) throw invalid(what, value, 'at most 9 PB');
    let period: string;
    try {
      period = parsePeriod(typeof o.period === 'string' ? o.period : 'month');
    } catch (e) {
      throw invalid(what, value, (e as Error).message);
    }
    return o.limit === 0 ? null : { limit: o.limit, period };
  }
  if (typeof value !== 'string') throw invalid(what, value, TRAFFIC_HINT);
  const text = value.trim();
  if (OFF.has(text.toLowerCase()) || /^0+(\.0*)?$/.test(text)) return null;
  const a = splitAmount(text);
  if (!a) throw invalid(what, value, TRAFFIC_HINT);
  const { amount: num, unit, per } = a;
  if (per === undefined) throw invalid(what, value, `say per what period; ${TRAFFIC_HINT}`);
  let factor: number;
  let period: string;
  try {
    factor = unitFactor(unit, false).factor;
    period = parsePeriod(per);
  } catch (e) {
    throw invalid(what, value, `${(e as Error).message}; ${TRAFFIC_HINT}`);
  }
  const bytes = Math.round(Number(num) * factor);
  if (bytes === 0) return null;
  if (bytes > MAX_TRAFFIC) throw invalid(what, value, 'at most 9 PB');
  return { limit: bytes, period };
}

/** A connection cap: a whole number; 0 or "off" → null (no cap). */
export function parseMaxConnections(value: unknown): number | null {
  if (value === null) return null;
  const hint = `use a whole number from 1 to ${MAX_CONNECTIONS} (0 or "off" for no cap)`;
  let n: number;
  if (typeof value === 'number') n = value;
  else if (typeof value === 'string' && OFF.has(value.trim().toLowerCase())) return null;
  else if (typeof value === 'string' && /^\d+$/.test(value.trim())) n = Number(value.trim());
  else throw invalid('connection cap', value, hint);
  if (!Number.isInteger(n) || n < 0 || n > MAX_CONNECTIONS) throw invalid('connection cap', value, hint);
  return n === 0 ? null : n;
}

export function parseBalance(value: unknown): Balance {
  if (typeof value === 'string' && (BALANCES as readonly string[]).includes(value)) return value as Balance;
  throw invalid('balance', value, `use ${BALANCES.join(' or ')}`);
}

export const DAY_MS = 86_400_000;

export function dayOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** The counting window of a period at `now`: its first day, and when a monthly one resets. */
export function periodWindow(period: string, now: number): { start: string; resets: string | null } {
  if (period === 'month') {
    const d = new Date(now);
    const start = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
    const next = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
    return { start: dayOf(start), resets: dayOf(next) };
  }
  const days = Number(period.slice(0, -1));
  return { start: dayOf(now - (days - 1) * DAY_MS), resets: null };
}

export interface LimitsView {
  balance: Balance;
  bandwidth_up: number | null;
  bandwidth_down: number | null;
  max_connections: number | null;
  traffic_limit: number | null;
  traffic_period: string | null;
}

export type RepositoryLimitsView = Omit<LimitsView, 'balance'>;

/** A limit object as the admin API shows it. */
export function limitsView(l: Limits, balance: Balance): LimitsView {
  return {
    balance,
    bandwidth_up: l.bandwidthUp,
    bandwidth_down: l.bandwidthDown,
    max_connections: l.maxConnections,
    traffic_limit: l.trafficLimit,
    traffic_period: l.trafficPeriod,
  };
}
