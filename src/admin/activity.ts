import { type LogEvent, type Logger, onLogEvents } from '../log/index.js';

/** One line of the activity feed: an event record, with only fields that are safe to show. */
export interface ActivityItem {
  time: string;
  event: string;
  level: string;
  msg?: string;
  [field: string]: unknown;
}

const ACTIVITY_FIELDS = [
  'tenant',
  'label',
  'port',
  'source',
  'reason',
  'code',
  'quota',
  'fingerprint',
  'front_door',
  'repository',
  'status',
  'bytes_in',
  'bytes_out',
  'duration_ms',
  'group',
];

/** Records the feed keeps for a new dashboard's snapshot. */
export const ACTIVITY_KEEP = 50;

/** One event record as the activity feed shows it: only the fields that are safe to show. */
function activityItem(e: LogEvent): ActivityItem {
  const item: ActivityItem = {
    time: new Date(e.time).toISOString(),
    event: e.fields.event,
    level: e.levelName,
    msg: e.msg,
  };
  const all = { ...e.bindings, ...e.fields };
  for (const k of ACTIVITY_FIELDS) {
    const v = all[k];
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') item[k] = v;
  }
  return item;
}

/**
 * The event records of one process's log, for the dashboard's activity feed: the last
 * ACTIVITY_KEEP as logged (shaped only when asked for: a gateway nobody watches pays two array
 * operations per record), and each new one shaped for a watcher while one is set. Under
 * `workers` every worker keeps its own, and the primary's feed asks them.
 */
export class RecentActivity {
  private readonly recent: LogEvent[] = [];
  private watcher?: (item: ActivityItem) => void;
  private readonly off: () => void;

  constructor(log: Logger) {
    this.off = onLogEvents(log, (e) => {
      this.recent.push(e);
      if (this.recent.length > ACTIVITY_KEEP) this.recent.shift();
      this.watcher?.(activityItem(e));
    });
  }

  items(): ActivityItem[] {
    return this.recent.map(activityItem);
  }

  /** Calls `fn` with every new record (undefined: stop). */
  watch(fn: ((item: ActivityItem) => void) | undefined): void {
    this.watcher = fn;
  }

  close(): void {
    this.watcher = undefined;
    this.off();
  }
}

/** The last ACTIVITY_KEEP records of several processes' feeds, oldest first. */
export function latestActivity(lists: ReadonlyArray<ReadonlyArray<ActivityItem>>): ActivityItem[] {
  const all = lists.flat();
  if (lists.length > 1) all.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
  return all.slice(-ACTIVITY_KEEP);
}
