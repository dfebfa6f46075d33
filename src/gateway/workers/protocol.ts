import type { AddressInfo } from 'node:net';
import type { ActivityItem } from '../../admin/activity.js';
import type { SessionChange, WorkerMetrics } from '../../admin/metrics.js';
import type { StatsMessage } from '../../admin/traffic-stats.js';
import type { TenantChange } from '../../core/events.js';
import type { RemoteEndpoint, RemoteSession } from '../../core/forward-registry.js';
import type { PeerUsage } from '../../core/limits/usage.js';
import type { VerdictShareAnswer } from '../../frontdoor/http-proxy/verifiers/types.js';
import type { SlotBound } from '../../tunnel/unauthenticated-slots.js';

/**
 * What the primary and its workers tell each other over the IPC channel node's cluster module
 * gives them (`process.send`, `worker.send`). The primary opens the workers' listeners (tunnel
 * port, lease ports, front doors) and passes every accepted connection's handle to one worker
 * that asked for that listener (spread-listeners.ts); with `worker_accept: os` the workers accept
 * on the lease ports and front doors themselves (node's cluster module shares those sockets).
 */

/** A forward one worker serves, as the others and the primary learn it. */
export interface WorkerForward {
  tenant: string;
  label: string;
  port: number;
  connectors: number;
  connections: number;
  /** Its connectors (the admin API's view); left out of what the primary passes to workers. */
  endpoints?: RemoteEndpoint[];
}

/** A session a worker carries, for the admin API's view. */
export type WorkerSession = Omit<RemoteSession, 'node'>;

export type WorkerMessage =
  /** Started: the addresses it listens on (shared with every other worker). */
  | { t: 'tether:ready'; slot: number; tunnel: string; extra: Record<string, string> }
  /** Its forwards now, and the loopback port on which it takes connections other workers relay. */
  | {
      t: 'tether:forwards';
      slot: number;
      relayPort: number;
      forwards: WorkerForward[];
      sessions: WorkerSession[];
    }
  /** A tenant change made in this worker: the primary applies it and tells the other workers. */
  | { t: 'tether:event'; change: TenantChange }
  /** A session opened or closed here: the others know a connector coming back is a reconnect. */
  | ({ t: 'tether:session' } & SessionChange)
  /** A login failure its throttle `name` counted for `source`: every worker counts it. */
  | { t: 'tether:throttle'; name: string; source: string }
  /** The answer to the primary's question `id`. */
  | { t: 'tether:answer'; id: number; answer: unknown }
  /** An unauthenticated slot for a connection from `ip` on listener `pool` (see shared-slots.ts). */
  | { t: 'tether:slot'; id: number; pool: string; ip: string; max: number; maxPerSource: number }
  /** That slot comes back (the connection logged in or closed). */
  | { t: 'tether:slot-release'; id: number }
  /** The shared verdict of a credential's `key` on route `scope` (see shared-verdicts.ts). */
  | { t: 'tether:verdict'; id: number; scope: string; key: string }
  /** The answer of a verification made here, for the workers waiting on it and later requests. */
  | {
      t: 'tether:verdict-put';
      scope: string;
      key: string;
      answer: Exclude<VerdictShareAnswer, 'go'>;
      ttl: number;
    }
  /** A good upstream credential of route `scope` read here; the primary passes it to the others. */
  | { t: 'tether:secret'; scope: string; value: string; at: number }
  /** Bytes it counted, or wrote to the store (the primary passes it to the others). */
  | { t: 'tether:usage'; usage: PeerUsage }
  /** Its drain's outcome, just before it exits. */
  | { t: 'tether:drained'; asked: number; moved: number; cut: number }
  /** A new event record, while the primary's dashboard watches. */
  | { t: 'tether:activity'; item: ActivityItem }
  /** Pass it the connections of the listener `key` (see spread-listeners.ts). */
  | { t: 'tether:listen'; id: number; key: string; host: string; port: number; logins?: boolean }
  /** No more connections of `key` (its listener closed). */
  | { t: 'tether:unlisten'; key: string };

export type PrimaryMessage =
  /** Every other worker's forwards, and where each of those workers takes relayed connections. */
  | { t: 'tether:directory'; workers: Array<{ slot: number; relayPort: number; forwards: WorkerForward[] }> }
  | { t: 'tether:event'; change: TenantChange }
  | { t: 'tether:throttle'; name: string; source: string }
  | ({ t: 'tether:session' } & SessionChange)
  /** A question every worker answers (`tether:answer` with the same id). */
  | { t: 'tether:ask'; id: number; ask: WorkerQuestion }
  /** The answer to `tether:slot` `id`: held for the worker, or the bound that refused it. */
  | { t: 'tether:slot'; id: number; refused?: SlotBound }
  /** Another worker's upstream credential of route `scope` (see WorkerSecrets). */
  | { t: 'tether:secret'; scope: string; value: string; at: number }
  /** Another worker's counted or written bytes, or its death (see UsageShare). */
  | { t: 'tether:usage'; usage: PeerUsage }
  /** The answer to `tether:verdict` `id`. */
  | { t: 'tether:verdict'; id: number; answer: VerdictShareAnswer }
  /** A dashboard watches the primary (send each new event record) or no longer does. */
  | { t: 'tether:watch'; on: boolean }
  /** SIGTERM's drain, counted from `startedAt`; `stop`: at once. The worker exits after either. */
  | { t: 'tether:drain'; startedAt: number }
  | { t: 'tether:stop' }
  /** The answer to `tether:listen` `id`: the listener's address, or why it could not open. */
  | { t: 'tether:listening'; id: number; address?: AddressInfo; error?: string }
  /** A connection of the listener `key`, its socket passed with the message. */
  | { t: 'tether:conn'; key: string }
  /** The answer to `tether:unlisten`: no connection of `key` is passed to it after this one. */
  | { t: 'tether:unlistened'; key: string };

/**
 * What the primary asks its workers, when it needs their figures now: a scrape of `/metrics`
 * (`getMetricsAsJSON()`), the dashboard's traffic sample (`advance` as in TrafficSampler), the
 * connections and sessions a drain starts with.
 */
export type WorkerQuestion =
  | { q: 'metrics' }
  | { q: 'stats'; advance: boolean }
  | { q: 'counts' }
  | { q: 'activity' }
  /** Nothing but the flush every question makes: the reports a worker holds back reach the primary. */
  | { q: 'sync' };

/** Each question's answer. */
export interface WorkerAnswers {
  metrics: WorkerMetrics;
  stats: StatsMessage;
  counts: WorkerCounts;
  /** Its last event records (the dashboard's snapshot). */
  activity: ActivityItem[];
  sync: true;
}

export interface WorkerCounts {
  /** Forwarded connections open in the worker (the broker's). */
  connections: number;
  sessions: number;
}

/** How often a worker's row in the forward directory is renewed, and when it stops counting. */
export const WORKER_HEARTBEAT_MS = 2_000;
export const WORKER_DEAD_AFTER_MS = 6_000;

/**
 * A worker's name in the forward directory (`nodes`, `forwards`) and in the admin API's views;
 * in a cluster, under its member's (`gw1/worker-2`: a member's `node_id` has no "/").
 */
export function workerNode(slot: number, member?: string | null): string {
  return member ? `${member}/worker-${slot}` : `worker-${slot}`;
}

/** Environment a worker starts with: its slot, and the key signing relayed connections' headers. */
export const WORKER_SLOT_ENV = 'TETHER_WORKER_SLOT';
export const WORKER_RELAY_KEY_ENV = 'TETHER_WORKER_RELAY_KEY';

export function isMessage<T extends { t: string }>(m: unknown): m is T {
  return (
    typeof m === 'object' &&
    m !== null &&
    typeof (m as { t?: unknown }).t === 'string' &&
    (m as { t: string }).t.startsWith('tether:')
  );
}

/**
 * A worker's questions to the primary whose answers come back as messages of type `t` carrying
 * the question's id (the unauthenticated slots, the token verdicts, the login listeners).
 */
export class PrimaryAnswers<T extends 'tether:slot' | 'tether:verdict' | 'tether:listening'> {
  private next = 0;
  private readonly waiting = new Map<number, (m: Extract<PrimaryMessage, { t: T }>) => void>();
  /** Stops listening. */
  readonly close: () => void;

  constructor(t: T, onMessage: (fn: (m: unknown) => void) => () => void) {
    this.close = onMessage((m) => {
      if (!isMessage<PrimaryMessage>(m) || m.t !== t) return;
      const { id } = m as unknown as { id: number };
      const then = this.waiting.get(id);
      if (!then) return;
      this.waiting.delete(id);
      then(m as Extract<PrimaryMessage, { t: T }>);
    });
  }

  /** Sends the question `send` makes with its id; `then` gets the answer. */
  ask(send: (id: number) => void, then: (m: Extract<PrimaryMessage, { t: T }>) => void): void {
    const id = ++this.next;
    this.waiting.set(id, then);
    send(id);
  }
}
