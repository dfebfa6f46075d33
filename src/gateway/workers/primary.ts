import cluster, { type Worker } from 'node:cluster';
import type { ActivityItem } from '../../admin/activity.js';
import type { GatewayMetrics, WorkerMetrics } from '../../admin/metrics.js';
import type { StatsMessage } from '../../admin/traffic-stats.js';
import type { Component } from '../../core/component.js';
import type { TenantEvents } from '../../core/events.js';
import type { ForwardRegistry, RemoteForward } from '../../core/forward-registry.js';
import type { PeerUsage } from '../../core/limits/usage.js';
import type { Logger } from '../../log/index.js';
import type { Store } from '../../store/types.js';
import {
  isMessage,
  type PrimaryMessage,
  WORKER_RELAY_KEY_ENV,
  WORKER_SLOT_ENV,
  type WorkerAnswers,
  type WorkerCounts,
  type WorkerForward,
  type WorkerMessage,
  type WorkerQuestion,
  type WorkerSession,
  workerNode,
} from './protocol.js';
import { SlotLedger } from './shared-slots.js';
import { VerdictBook } from './shared-verdicts.js';
import { SpreadListeners } from './spread-listeners.js';

export interface WorkerPoolDeps {
  log: Logger;
  store: Store;
  /** The primary's registry: every worker's forwards as remote ones (the admin API's view). */
  registry: ForwardRegistry;
  events: TenantEvents;
  count: number;
  /** `worker_accept`: the primary passes each connection to a worker, or the workers accept. */
  accept: 'primary' | 'os';
  /** `tunnel.max_unauthenticated`: the most logins on their way to workers at once. */
  maxUnauthenticated: number;
  relayKey: string;
  /** In a cluster, this member's `node_id`: its workers' names in the directory are under it. */
  member: string | null;
  /** Counts restarts (`tether_worker_restarts_total`). */
  metrics: Pick<GatewayMetrics, 'workerRestarts'>;
  /** How long workers may take to drain (`drain_timeout`); they are killed a while after. */
  drainTimeout: number;
  /** The workers' byte counts, for this process's usage views (traffic quotas). */
  usage?: (e: PeerUsage) => void;
}

/** How long a worker may take to start before the gateway gives up starting. */
const START_TIMEOUT_MS = 60_000;
/** A worker that dies within this long of its start is restarted after a growing pause. */
const CRASH_LOOP_MS = 10_000;
const MAX_RESTART_DELAY_MS = 10_000;
/** How long a question waits for each worker's answer (a worker that does not answer is left out). */
const ANSWER_WAIT_MS = 2_000;
/** How long an admin read waits for a worker's held-back reports (a stopped worker costs this). */
const SETTLE_WAIT_MS = 500;
/** How long after the drain (or a stop) a worker that has not exited is killed. */
const EXIT_GRACE_MS = 5_000;

interface Slot {
  slot: number;
  worker?: Worker;
  startedAt: number;
  quickDeaths: number;
  relayPort: number;
  forwards: WorkerForward[];
  sessions: WorkerSession[];
  ready?: { tunnel: string; extra: Record<string, string> };
}

/**
 * The primary's side of `workers` > 1: forks the workers (node's cluster module), opens the
 * listeners they ask for and passes each accepted connection to one worker listening on that
 * port (spread-listeners.ts; under `worker_accept: os` only the login listeners), restarts one
 * that dies, keeps the directory of which worker serves which forward and tells every worker the
 * others', and carries tenant changes between the admin API (here) and the workers.
 */
export class WorkerPool implements Component {
  readonly name = 'workers';
  private readonly slots: Slot[] = [];
  private stopping = false;
  private restarts = 0;
  private unsubscribe?: () => void;
  private watcher?: (item: ActivityItem) => void;
  private readonly drained = { asked: 0, moved: 0, cut: 0 };
  /** Every worker's unauthenticated slots: one count for the gateway. */
  private readonly slotLedger = new SlotLedger();
  /** The HTTP front door's token verdicts, shared by the workers. */
  private readonly verdicts = new VerdictBook();
  /** The workers' listeners this process opens and spreads (under `os`, the login listeners only). */
  private readonly spread: SpreadListeners;
  private question = 0;
  private readonly waiting = new Map<number, (answer: unknown) => void>();

  constructor(private readonly deps: WorkerPoolDeps) {
    this.spread = new SpreadListeners({ log: deps.log, maxPassing: deps.maxUnauthenticated });
  }

  /** The tunnel address the workers listen on (the first ready worker's). */
  tunnelAddress(): string {
    return this.slots.find((s) => s.ready)?.ready?.tunnel ?? '';
  }

  /** Every live worker's figures (those that answer within ANSWER_WAIT_MS). */
  workerMetrics(): Promise<WorkerMetrics[]> {
    return this.ask({ q: 'metrics' });
  }

  /** Every live worker's traffic figures for the dashboard. */
  workerStats(advance: boolean): Promise<StatsMessage[]> {
    return this.ask({ q: 'stats', advance });
  }

  /** Each live worker's last event records. */
  workerActivity(): Promise<ActivityItem[][]> {
    return this.ask({ q: 'activity' });
  }

  /** Every worker's new event records go to `fn` while it is set (also a worker started later). */
  watchActivity(fn: ((item: ActivityItem) => void) | undefined): void {
    const was = this.watcher !== undefined;
    this.watcher = fn;
    if (was !== (fn !== undefined)) this.broadcast({ t: 'tether:watch', on: fn !== undefined });
  }

  /**
   * Resolves once every live worker has sent the reports it held back (a burst of grants is
   * reported at most every 20 ms), or SETTLE_WAIT_MS passed: a view read after this holds every
   * forward a worker granted before the call.
   */
  async settle(): Promise<void> {
    await this.ask({ q: 'sync' }, SETTLE_WAIT_MS);
  }

  /** Connections and sessions in all the workers now (those that answer). */
  async workerCounts(): Promise<WorkerCounts> {
    const all = await this.ask({ q: 'counts' });
    return {
      connections: all.reduce((n, c) => n + c.connections, 0),
      sessions: all.reduce((n, c) => n + c.sessions, 0),
    };
  }

  /** Asks every live worker; resolves to the answers that came within `wait` ms. */
  private async ask<Q extends WorkerQuestion>(
    ask: Q,
    wait = ANSWER_WAIT_MS,
  ): Promise<Array<WorkerAnswers[Q['q']]>> {
    const asked = this.slots.filter((s) => s.worker?.isConnected() && s.ready);
    const answers = await Promise.all(
      asked.map(
        (s) =>
          new Promise<unknown>((resolve) => {
            const id = ++this.question;
            const timer = setTimeout(() => {
              this.waiting.delete(id);
              resolve(undefined);
            }, wait);
            this.waiting.set(id, (a) => {
              clearTimeout(timer);
              this.waiting.delete(id);
              resolve(a);
            });
            this.sendTo(s, { t: 'tether:ask', id, ask });
          }),
      ),
    );
    return answers.filter((a) => a !== undefined) as Array<WorkerAnswers[Q['q']]>;
  }

  async start(): Promise<string> {
    const { store, events, count } = this.deps;
    // rows a previous run's workers left (a crash): they must not count toward quotas now
    for (let i = 1; i <= count; i++) await store.setNodeForwards(this.node(i), []);
    this.unsubscribe = events.on((c) => {
      if (c.origin !== 'remote') this.broadcast({ t: 'tether:event', change: c });
    });
    // before the first fork: node's cluster module fixes the policy then
    cluster.schedulingPolicy = this.deps.accept === 'os' ? cluster.SCHED_NONE : cluster.SCHED_RR;
    const started: Array<Promise<void>> = [];
    for (let i = 1; i <= count; i++) {
      const s: Slot = { slot: i, startedAt: 0, quickDeaths: 0, relayPort: 0, forwards: [], sessions: [] };
      this.slots.push(s);
      started.push(this.fork(s));
    }
    await Promise.all(started);
    const pids = this.slots.map((s) => s.worker?.process.pid).join(', ');
    return `${count} (pids ${pids}${this.deps.accept === 'os' ? '; each accepts its connections itself, logins spread by the primary' : ''})`;
  }

  /** What the first worker reported listening on (front doors), for the start line. */
  workerExtra(): Record<string, string> {
    const { worker: _own, ...extra } = this.slots.find((s) => s.ready)?.ready?.extra ?? {};
    return extra;
  }

  /** What the workers' drains reported, added up. */
  workersDrained(): { asked: number; moved: number; cut: number } {
    return { ...this.drained };
  }

  async drain(): Promise<void> {
    this.stopping = true;
    this.spread.drain();
    const startedAt = Date.now();
    await this.each({ t: 'tether:drain', startedAt }, this.deps.drainTimeout + EXIT_GRACE_MS);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.spread.close();
    this.unsubscribe?.();
    await this.each({ t: 'tether:stop' }, EXIT_GRACE_MS);
  }

  /** Sends every live worker `m` and waits (at most `ms`) for each to exit; kills the rest. */
  private async each(m: PrimaryMessage, ms: number): Promise<void> {
    const live = this.slots.map((s) => s.worker).filter((w): w is Worker => !!w && !w.isDead());
    await Promise.all(
      live.map(
        (w) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => {
              w.process.kill('SIGKILL');
            }, ms);
            w.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            try {
              w.send(m);
            } catch {
              w.process.kill('SIGKILL');
            }
          }),
      ),
    );
  }

  private fork(s: Slot): Promise<void> {
    const { log } = this.deps;
    const w = cluster.fork({ [WORKER_SLOT_ENV]: String(s.slot), [WORKER_RELAY_KEY_ENV]: this.deps.relayKey });
    s.worker = w;
    // A message sent as the worker dies fails later, as an 'error' event on the worker (EPIPE):
    // without a listener that would end the primary, and with it every other worker. Its exit
    // is handled below; the message was for a process that is gone.
    w.on('error', (err) => {
      log.debug({ err, worker: s.slot }, `could not reach worker ${s.slot} (it is exiting)`);
    });
    s.startedAt = Date.now();
    s.ready = undefined;
    return new Promise<void>((resolve, reject) => {
      let up = false;
      const timer = setTimeout(() => {
        if (up) return;
        w.process.kill('SIGKILL');
        reject(new Error(`worker ${s.slot} did not start within ${START_TIMEOUT_MS / 1000} s`));
      }, START_TIMEOUT_MS);
      w.on('message', (m: unknown) => {
        if (!isMessage<WorkerMessage>(m)) return;
        if (m.t === 'tether:ready') {
          s.ready = { tunnel: m.tunnel, extra: m.extra };
          if (!up) {
            up = true;
            clearTimeout(timer);
            log.info(
              { event: 'gateway.worker_started', worker: s.slot, pid: w.process.pid },
              `worker ${s.slot} started (pid ${w.process.pid})`,
            );
            this.sendDirectory();
            if (this.watcher) this.sendTo(s, { t: 'tether:watch', on: true });
            resolve();
          }
        } else if (m.t === 'tether:forwards') {
          s.relayPort = m.relayPort;
          s.forwards = m.forwards;
          s.sessions = m.sessions;
          this.sendDirectory();
        } else if (m.t === 'tether:answer') {
          this.waiting.get(m.id)?.(m.answer);
        } else if (m.t === 'tether:slot') {
          const refused = this.slotLedger.take(s.slot, m);
          this.sendTo(s, { t: 'tether:slot', id: m.id, ...(refused ? { refused } : {}) });
        } else if (m.t === 'tether:verdict') {
          this.verdicts.get(s.slot, m.scope, m.key, (answer) =>
            this.sendTo(s, { t: 'tether:verdict', id: m.id, answer }),
          );
        } else if (m.t === 'tether:verdict-put') {
          this.verdicts.put(m.scope, m.key, m.answer, m.ttl);
        } else if (m.t === 'tether:slot-release') {
          this.slotLedger.release(s.slot, m.id);
        } else if (m.t === 'tether:drained') {
          this.drained.asked += m.asked;
          this.drained.moved += m.moved;
          this.drained.cut += m.cut;
        } else if (m.t === 'tether:activity') {
          this.watcher?.(m.item);
        } else if (m.t === 'tether:listen') {
          const { id, key, host, port, logins } = m;
          this.spread.take(s.slot, { key, host, port, ...(logins ? { logins } : {}) }, w).then(
            (address) => this.sendTo(s, { t: 'tether:listening', id, address }),
            (err: NodeJS.ErrnoException) =>
              this.sendTo(s, { t: 'tether:listening', id, error: err.code ?? err.message }),
          );
        } else if (m.t === 'tether:unlisten') {
          this.spread.drop(s.slot, m.key);
          this.sendTo(s, { t: 'tether:unlistened', key: m.key });
        } else {
          // a tenant change (applied here too), a throttle failure or a session: every other worker
          if (m.t === 'tether:event') this.deps.events.emit({ ...m.change, origin: 'remote' });
          else if (m.t === 'tether:usage') this.deps.usage?.(m.usage);
          for (const o of this.slots) if (o !== s) this.sendTo(o, m);
        }
      });
      w.once('exit', (code, signal) => {
        clearTimeout(timer);
        s.worker = undefined;
        this.slotLedger.releaseAll(s.slot);
        this.verdicts.releaseAll(s.slot);
        this.spread.drop(s.slot);
        // the bytes it counted and did not write died with it
        this.broadcast({ t: 'tether:usage', usage: { worker: s.slot, kind: 'gone' } });
        this.deps.usage?.({ worker: s.slot, kind: 'gone' });
        s.forwards = [];
        s.sessions = [];
        s.ready = undefined;
        this.sendDirectory();
        this.deps.store.setNodeForwards(this.node(s.slot), []).catch(() => {});
        if (!up) {
          reject(
            new Error(
              `worker ${s.slot} exited while starting (${signal ?? `exit code ${code}`}); see its log lines above`,
            ),
          );
          return;
        }
        if (this.stopping) return;
        this.restarts++;
        this.deps.metrics.workerRestarts?.inc();
        const quick = Date.now() - s.startedAt < CRASH_LOOP_MS;
        s.quickDeaths = quick ? s.quickDeaths + 1 : 0;
        const delay = Math.min(MAX_RESTART_DELAY_MS, quick ? 500 * 2 ** (s.quickDeaths - 1) : 0);
        log.error(
          {
            event: 'gateway.worker_exited',
            worker: s.slot,
            pid: w.process.pid,
            code,
            signal,
            restart_in_ms: delay,
            restarts: this.restarts,
          },
          `worker ${s.slot} (pid ${w.process.pid}) exited (${signal ?? `exit code ${code}`}); restarting it${delay > 0 ? ` in ${delay} ms` : ''}: its connectors reconnect to any worker and keep their lease ports`,
        );
        setTimeout(() => {
          if (this.stopping) return;
          this.fork(s).catch((err: unknown) =>
            log.error({ err, worker: s.slot }, `could not restart worker ${s.slot}`),
          );
        }, delay).unref();
      });
    });
  }

  /** Every worker's forwards: the primary's registry shows them, and each worker learns the others'. */
  private sendDirectory(): void {
    const live = this.slots.filter((s) => s.worker && s.relayPort > 0);
    const remote: RemoteForward[] = [];
    for (const s of live)
      for (const f of s.forwards) remote.push({ ...f, node: this.node(s.slot), address: '127.0.0.1' });
    this.deps.registry.setRemote(remote, 'workers');
    this.deps.registry.setRemoteSessions(
      live.flatMap((s) => s.sessions.map((x) => ({ ...x, node: this.node(s.slot) }))),
    );
    // workers need where each forward is served, not who connects it
    const workers = live.map((s) => ({
      slot: s.slot,
      relayPort: s.relayPort,
      forwards: s.forwards.map(({ endpoints: _e, ...f }) => f),
    }));
    this.broadcast({ t: 'tether:directory', workers });
  }

  private node(slot: number): string {
    return workerNode(slot, this.deps.member);
  }

  private broadcast(m: PrimaryMessage): void {
    for (const s of this.slots) this.sendTo(s, m);
  }

  private sendTo(s: Slot, m: PrimaryMessage): void {
    const w = s.worker;
    if (!w || w.isDead() || !w.isConnected()) return;
    try {
      w.send(m);
    } catch (err) {
      this.deps.log.warn({ err, worker: s.slot }, `could not reach worker ${s.slot}`);
    }
  }
}
