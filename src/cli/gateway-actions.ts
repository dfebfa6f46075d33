import { availableParallelism } from 'node:os';
import { type GatewayConfig, loadGatewayConfig } from '../config/gateway.js';
import type { PeerUsage } from '../core/limits/usage.js';
import { clusterPart, withFrontDoors } from '../gateway/front-doors.js';
import { Gateway } from '../gateway/index.js';
import type { PrimaryMessage, WorkerMessage } from '../gateway/workers/protocol.js';
import { createLogger, type Logger } from '../log/index.js';
import { startHeapTrim } from '../tunnel/heap-trim.js';
import { checkConfigAgain } from './gateway-reload.js';
import { VERSION } from './version.js';

/** How long `stop()` may take after the drain (or after a second signal) before the process exits anyway. */
const STOP_GRACE_MS = 5_000;

/**
 * `tether gateway`: runs the gateway until SIGTERM/SIGINT (loaded only when that command runs).
 * The first signal drains (stop accepting, connectors move, open connections finish within
 * `drain_timeout`) and exits 0; a second one stops at once (open connections are cut) and exits
 * 0; a third exits at once with 1, not even waiting for the stop to finish. A signal while the
 * gateway is still starting stops it (nothing was served yet) and exits 0. SIGHUP checks
 * gateway.yaml again (see gateway-reload.ts).
 */
export async function run(o: { config?: string }): Promise<void> {
  const config = loadGatewayConfig(o.config);
  const log = createLogger({ level: config.log.level, audit: config.log.audit });
  const workers = config.workers === 'auto' ? availableParallelism() : config.workers;
  let gw: Gateway;
  if (workers > 1) {
    // several processes (src/gateway/workers/): this one is the primary, or one of its workers
    const { default: cluster } = await import('node:cluster');
    if (cluster.isWorker) return runWorker(config, log);
    gw = await primaryGateway(config, log, workers);
  } else {
    gw = withFrontDoors(new Gateway(config, { log, version: VERSION }));
  }
  let started = false;
  let signals = 0;
  // Set once the exit is decided: a signal after that changes nothing (it would log "exiting at
  // once" and still exit with the code already chosen).
  let exiting = false;
  const exit = (code: number) => {
    if (exiting) return;
    exiting = true;
    // give the event loop one turn for anything queued (log lines are flushed on exit)
    setImmediate(() => process.exit(code));
  };
  const forceAfter = (ms: number) => {
    const t = setTimeout(() => {
      log.warn({ event: 'gateway.stop_timeout' }, `stop took longer than ${ms} ms; exiting`);
      exit(0);
    }, ms);
    t.unref();
  };
  const stopNow = (signal: string, why: string) => {
    log.warn({ event: 'gateway.stopping', signal, drain: false }, why);
    forceAfter(STOP_GRACE_MS);
    gw.stop().then(
      () => {
        log.info({ event: 'gateway.stopped' }, 'stopped');
        exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'error while stopping');
        exit(1);
      },
    );
  };
  const onSignal = (signal: NodeJS.Signals) => {
    const at = Date.now();
    if (exiting) return;
    signals++;
    if (signals >= 3) {
      log.error(
        { event: 'gateway.exit_now', signal },
        `received ${signal}, a third signal: exiting at once (traffic counters since their last write may be lost)`,
      );
      exit(1);
      return;
    }
    if (signals === 2) {
      stopNow(signal, `received ${signal} again: stopping at once, cutting open connections`);
      return;
    }
    if (!started) {
      stopNow(signal, `received ${signal} while starting: stopping (nothing was served yet)`);
      return;
    }
    log.info(
      { event: 'gateway.stopping', signal, drain: true, drain_timeout_ms: config.drain_timeout },
      `received ${signal}: draining (up to ${config.drain_timeout} ms; send it again to stop at once)`,
    );
    forceAfter(config.drain_timeout + STOP_GRACE_MS);
    gw.drain(at).then(
      () => {
        log.info({ event: 'gateway.stopped' }, 'stopped');
        exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'error while draining');
        exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // without a handler SIGHUP would end the process; it checks gateway.yaml again instead
  process.on('SIGHUP', () => checkConfigAgain(o.config, config, log));
  log.info({ event: 'gateway.starting', pid: process.pid }, `tether gateway ${VERSION} starting`);
  const a = await gw.start();
  if (signals > 0) return; // stopping already (a signal came during the start)
  started = true;
  startHeapTrim();
  log.info(
    {
      event: 'gateway.started',
      tunnel: a.tunnel,
      admin: a.adminUrl,
      host_fingerprint: a.hostFingerprint,
      data_dir: a.dataDir,
      forwards: a.forwards,
      ...a.extra,
    },
    `tether gateway ${VERSION} ready: tunnel ssh://${a.tunnel} (host key ${a.hostFingerprint}), admin ${a.adminUrl}, forwards on ${a.forwards}, data in ${a.dataDir}`,
  );
}

/**
 * The primary of `workers` > 1: the store's upkeep, the admin API and the dashboard; the workers
 * it forks carry the tunnel port, the sessions and the front doors.
 */
async function primaryGateway(config: GatewayConfig, log: Logger, count: number): Promise<Gateway> {
  const { randomBytes } = await import('node:crypto');
  const { WorkerPool } = await import('../gateway/workers/primary.js');
  let pool: InstanceType<typeof WorkerPool> | undefined;
  // the workers' byte counts reach this process's usage views (it counts nothing itself)
  const usageListeners = new Set<(e: PeerUsage) => void>();
  const gw = new Gateway(config, {
    log,
    version: VERSION,
    role: {
      kind: 'primary',
      tunnelAddress: () => pool?.tunnelAddress() ?? '',
      workerExtra: () => pool?.workerExtra() ?? {},
      workerMetrics: async () => (pool ? pool.workerMetrics() : []),
      workers: {
        stats: async (advance) => (pool ? pool.workerStats(advance) : []),
        activity: async () => (pool ? pool.workerActivity() : []),
        watch: (fn) => pool?.watchActivity(fn),
      },
      settle: async () => pool?.settle(),
      workerCounts: async () => (pool ? pool.workerCounts() : { connections: 0, sessions: 0 }),
      workersDrained: () => pool?.workersDrained() ?? { asked: 0, moved: 0, cut: 0 },
      usage: {
        counted: () => {},
        written: () => {},
        onPeer: (fn) => {
          usageListeners.add(fn);
          return () => usageListeners.delete(fn);
        },
      },
    },
  });
  return gw
    .use((ctx) => {
      pool = new WorkerPool({
        log: ctx.log,
        store: ctx.store,
        registry: ctx.registry,
        events: ctx.events,
        count,
        accept: config.worker_accept,
        maxUnauthenticated: config.tunnel.max_unauthenticated,
        relayKey: randomBytes(32).toString('base64url'),
        member: ctx.nodeId,
        drainTimeout: config.drain_timeout,
        metrics: ctx.metrics,
        usage: (e) => {
          for (const fn of usageListeners) fn(e);
        },
      });
      return pool;
    })
    .use(clusterPart);
}

/**
 * A worker of `workers` > 1. It follows its primary: it drains or stops when the primary says
 * so, and stops when the primary is gone. Signals are the primary's to handle (a service manager
 * or a terminal sends them to every process of the gateway at once).
 */
async function runWorker(config: GatewayConfig, parentLog: Logger): Promise<void> {
  const { WorkerMember } = await import('../gateway/workers/worker.js');
  const { TrafficSampler } = await import('../admin/traffic-stats.js');
  const { RecentActivity } = await import('../admin/activity.js');
  const { WorkerSlots } = await import('../gateway/workers/shared-slots.js');
  const { WorkerVerdicts } = await import('../gateway/workers/shared-verdicts.js');
  const { WorkerSecrets } = await import('../gateway/workers/shared-secrets.js');
  const { workerUsage } = await import('../gateway/workers/shared-usage.js');
  const { spreadListen } = await import('../gateway/workers/spread-listeners.js');
  const { WORKER_RELAY_KEY_ENV, WORKER_SLOT_ENV, isMessage } = await import('../gateway/workers/protocol.js');
  const slot = Number(process.env[WORKER_SLOT_ENV]);
  const relayKey = process.env[WORKER_RELAY_KEY_ENV] ?? '';
  const log = parentLog.child({ worker: slot });
  const send = (m: WorkerMessage) => {
    if (process.connected) process.send?.(m);
  };
  const onMessage = (fn: (m: unknown, handle?: unknown) => void) => {
    process.on('message', fn);
    return () => process.off('message', fn);
  };
  const slots = new WorkerSlots(send, onMessage);
  const verdicts = new WorkerVerdicts(send, onMessage);
  const secrets = new WorkerSecrets(send, onMessage);
  const gw = new Gateway(config, {
    log,
    version: VERSION,
    role: {
      kind: 'worker',
      slot,
      slots: (pool, max, perSource) => slots.keeper(pool, max, perSource),
      verdicts: (scope) => verdicts.share(scope),
      secrets: (scope) => secrets.share(scope),
      usage: workerUsage(slot, send, onMessage),
      // logins are spread by the primary in both modes (bounded there; see spread-listeners.ts)
      listen: spreadListen(send, onMessage),
    },
  });
  gw.use((ctx) => {
    const sampler = new TrafficSampler(ctx.registry);
    const activity = new RecentActivity(ctx.log);
    return new WorkerMember({
      log: ctx.log,
      clock: ctx.clock,
      store: ctx.store,
      registry: ctx.registry,
      events: ctx.events,
      leases: ctx.leases,
      listeners: ctx.listeners,
      metrics: () => ctx.metrics.registry.getMetricsAsJSON(),
      stats: (advance) => sampler.stats(advance),
      activity,
      openConnections: () => ctx.broker.openCount(),
      throttles: ctx.throttles,
      sessions: ctx.metrics,
      slot,
      relayKey,
      member: ctx.nodeId,
      send,
      onMessage,
    });
  });
  withFrontDoors(gw);
  let exiting = false;
  const exit = (code: number) => {
    if (exiting) return;
    exiting = true;
    setImmediate(() => process.exit(code));
  };
  const finish = (p: Promise<unknown>) =>
    p.then(
      () => exit(0),
      (err: unknown) => {
        log.error({ err }, 'error while stopping');
        exit(1);
      },
    );
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, () => {});
  process.on('message', (m: unknown) => {
    if (!isMessage<PrimaryMessage>(m)) return;
    if (m.t === 'tether:drain')
      finish(
        gw.drain(m.startedAt).then(async (r) => {
          // sent before the exit, and waited for: a message still queued dies with the process
          if (r && process.connected)
            await new Promise<void>((resolve) =>
              process.send?.(
                { t: 'tether:drained', asked: r.asked, moved: r.moved, cut: r.cut },
                undefined,
                {},
                () => resolve(),
              ),
            );
        }),
      );
    else if (m.t === 'tether:stop') finish(gw.stop());
  });
  process.on('disconnect', () => {
    log.warn({ event: 'gateway.primary_gone' }, 'the primary process is gone: stopping');
    finish(gw.stop());
  });
  let a: Awaited<ReturnType<Gateway['start']>>;
  try {
    a = await gw.start();
  } catch (err) {
    // the primary reports the worker that exited while starting, and gives up starting
    log.error(
      { err, event: 'gateway.worker_failed' },
      `worker ${slot} could not start: ${(err as Error).message}`,
    );
    exit(1);
    return;
  }
  startHeapTrim();
  send({ t: 'tether:ready', slot, tunnel: a.tunnel, extra: a.extra });
}
