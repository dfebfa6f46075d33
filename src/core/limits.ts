/**
 * Per-tenant (and per-repository) traffic limits, in three parts: ./limits/policy.ts (what a
 * limit is, parsing and the views the admin API shows), ./limits/usage.ts (byte counters,
 * flush, the usage a quota is checked against) and ./limits/traffic-limits.ts (the limits in
 * effect and the admission of new connections). Callers import from here.
 */
export {
  BALANCES,
  type Balance,
  dayOf,
  type Limits,
  type LimitsPatch,
  type LimitsView,
  MAX_CONNECTIONS,
  MAX_PERIOD_DAYS,
  MAX_RATE,
  MAX_TRAFFIC,
  parseBalance,
  parseMaxConnections,
  parsePeriod,
  parseRate,
  parseTraffic,
  periodWindow,
  type RepositoryLimitsView,
} from './limits/policy.js';
export { type Admission, TrafficLimits, type TrafficLimitsOptions } from './limits/traffic-limits.js';
export type { UsageView } from './limits/usage.js';
