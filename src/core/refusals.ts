import type { Logger } from '../log/index.js';
import type { Clock } from './clock.js';

/** What a bound's refusal log record carries besides the reason. */
export type RefusalFields = Record<string, unknown>;

/**
 * Logs inputs refused by a bound, once per burst instead of once per input: the first refusal of
 * a (reason, key) is logged at once with `count: 1`; further ones within `windowMs` are counted
 * and logged together when the window ends (`count: n`, `burst: true`). Every record has
 * `event: 'bound.refused'` and `reason` (the bound's name), which feeds `tether_refused_total`.
 * The number of open bursts is bounded too: past `maxKeys` a refusal is counted under one shared key.
 */
export class RefusalLog {
  private readonly open = new Map<string, { count: number; fields: RefusalFields; msg: string }>();

  constructor(
    private readonly log: Logger,
    private readonly clock: Clock,
    private readonly windowMs = 10_000,
    private readonly maxKeys = 1_000,
  ) {}

  /** One refused input. `key` separates bursts of the same reason (a source address, a tenant). */
  refuse(reason: string, key: string, fields: RefusalFields, msg: string): void {
    let k = `${reason}\0${key}`;
    const burst = this.open.get(k);
    if (burst) {
      burst.count++;
      return;
    }
    if (this.open.size >= this.maxKeys) {
      k = `${reason}\0*`;
      const shared = this.open.get(k);
      if (shared) {
        shared.count++;
        return;
      }
    }
    this.log.warn({ event: 'bound.refused', reason, count: 1, ...fields }, msg);
    const entry = { count: 0, fields, msg };
    this.open.set(k, entry);
    this.clock.setTimeout(() => {
      this.open.delete(k);
      if (entry.count > 0) {
        this.log.warn(
          { event: 'bound.refused', reason, count: entry.count, burst: true, ...entry.fields },
          `${entry.msg} (${entry.count} more within ${Math.round(this.windowMs / 1000)} s)`,
        );
      }
    }, this.windowMs);
  }
}
