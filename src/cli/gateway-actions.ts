import { loadGatewayConfig } from '../config/gateway.js';
import { withFrontDoors } from '../gateway/front-doors.js';
import { startHeapTrim } from '../gateway/heap-trim.js';
import { Gateway } from '../gateway/index.js';
import { createLogger } from '../log/index.js';
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
  const gw = withFrontDoors(new Gateway(config, { log, version: VERSION }));
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
