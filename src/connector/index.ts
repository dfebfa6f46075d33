/**
 * The connector's composition root: config → logger → supervisor → control socket → pid
 * file → signals. `tether connector run` is this function.
 */
import { chmodSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { type ConnectConfig, loadConnectConfig } from '../config/connect.js';
import { destinationOf } from '../config/uri.js';
import { TetherError } from '../errors/index.js';
import { createLogger, type Logger } from '../log/index.js';
import { type ControlCommand, closeControl, listenControl } from './control-socket.js';
import { removePidFile, writePidFile } from './daemon.js';
import { readPrivateKey } from './key-file.js';
import { type ConnectorMetrics, createConnectorMetrics } from './metrics.js';
import { Connector, type ReloadResult } from './supervisor.js';

export type { ConnectorStatus, RepoStatus } from './status.js';
export { Connector } from './supervisor.js';

export interface RunOptions {
  configFile: string;
  agent: string;
  env?: NodeJS.ProcessEnv;
  logger?: Logger;
  /** Signals to handle (tests pass an emitter). Default: the process. */
  signals?: NodeJS.EventEmitter;
}

export interface RunResult {
  /** Why it ended, when it was not asked to. */
  error?: TetherError;
}

function listenWhy(e: NodeJS.ErrnoException): string {
  switch (e.code) {
    case 'EADDRINUSE':
      return 'the address is already in use';
    case 'EACCES':
      return 'permission denied (ports below 1024 need privileges)';
    case 'EADDRNOTAVAIL':
      return 'not an address of this machine';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'unknown host';
    default:
      return e.message;
  }
}

/** Whether a bound address is loopback only (else metrics_listen is logged as a warning). */
export const isLoopback = (a: string): boolean => /^(127\.|::1$|::ffff:127\.)/.test(a);

/** Serves `metrics_listen`; a port it cannot have stops the start (exit code 2), like a bad config. */
async function startMetrics(
  cfg: ConnectConfig,
  connector: Connector,
  log: Logger,
): Promise<{ metrics: ConnectorMetrics; url: string } | undefined> {
  const at = cfg.metricsListen;
  if (!at) return undefined;
  const metrics = createConnectorMetrics({
    status: () => connector.status(),
    on: (event, listener) => connector.on(event, listener),
    off: (event, listener) => connector.off(event, listener),
  });
  let addr: AddressInfo;
  try {
    addr = await metrics.listen(at.host, at.port);
  } catch (e) {
    await metrics.close();
    throw new TetherError(
      'CONNECTOR_METRICS_LISTEN_FAILED',
      `${cfg.file}: metrics_listen: cannot listen on ${destinationOf(at)}: ${listenWhy(e as NodeJS.ErrnoException)}`,
      { status: 400, cause: e },
    );
  }
  const address = destinationOf({ host: addr.address, port: addr.port });
  const url = `http://${address}/metrics`;
  log.info({ event: 'connector.metrics_listening', address, url }, `Prometheus metrics on ${url}`);
  if (!isLoopback(addr.address)) {
    log.warn(
      { event: 'connector.metrics_not_local', address },
      `metrics_listen ${destinationOf(at)} is not a loopback address: anyone who reaches ${address} can read the metrics (repository names, traffic); keep it on 127.0.0.1 unless a firewall guards it`,
    );
  }
  return { metrics, url };
}

/** Runs the connector in the foreground until SIGTERM/SIGINT, `stop`, or a fatal error. */
export async function runConnector(opts: RunOptions): Promise<RunResult> {
  const env = opts.env ?? process.env;
  const cfg: ConnectConfig = loadConnectConfig(opts.configFile, env);
  const log = opts.logger ?? createLogger({ level: cfg.logLevel, name: 'connector' });
  const connector = new Connector({
    config: cfg,
    logger: log,
    agent: opts.agent,
    loadConfig: () => loadConnectConfig(opts.configFile, env),
  });
  const signals = opts.signals ?? process;
  let finish: (r: RunResult) => void = () => {};
  const done = new Promise<RunResult>((resolve) => {
    finish = resolve;
  });
  let stopping = false;
  const stop = async (result: RunResult) => {
    if (stopping) {
      // stopped again while draining: cut the connections now
      void connector.stop();
      return;
    }
    stopping = true;
    await connector.stop(result.error ? 0 : connector.config.drainTimeout);
    await served?.metrics.close();
    await closeControl(server, cfg.stateDir);
    removePidFile(cfg.stateDir);
    signals.off('SIGTERM', onTerm);
    signals.off('SIGINT', onTerm);
    signals.off('SIGHUP', onHup);
    log.info({ event: 'connector.stopped' }, 'connector stopped');
    finish(result);
  };

  /** Reloads connect.yaml; metrics_listen is only read at start. */
  const reload = (): ReloadResult => {
    const r = connector.reload();
    const was = cfg.metricsListen ? destinationOf(cfg.metricsListen) : null;
    const now = connector.config.metricsListen ? destinationOf(connector.config.metricsListen) : null;
    if (now !== was) {
      const message = `metrics_listen changed to ${now ?? '(none)'}: restart the connector to apply it; until then ${served ? `metrics stay on ${served.url}` : 'no metrics are served'}`;
      log.warn({ event: 'connector.restart_needed', key: 'metrics_listen', was, now }, message);
      r.warnings = [...(r.warnings ?? []), message];
    }
    return r;
  };

  const handler = async (cmd: ControlCommand): Promise<unknown> => {
    switch (cmd) {
      case 'status':
        return { ...connector.status(), metrics: served?.url ?? null };
      case 'reload':
        return reload();
      case 'ping':
        return { ms: await connector.ping(), gateway: connector.status().gateway };
      case 'stop':
        setImmediate(() => void stop({}));
        // the stopping side waits this long for open connections to finish (drain_timeout)
        return { pid: process.pid, drainMs: stopping ? 0 : connector.config.drainTimeout };
      default:
        throw new TetherError('BAD_REQUEST', `unknown command ${JSON.stringify(cmd)}`, { status: 400 });
    }
  };

  let served: { metrics: ConnectorMetrics; url: string } | undefined;
  // A key that cannot be used is the user's to fix: say so before taking the state dir's socket.
  readPrivateKey(cfg.sshKey);
  const server = await listenControl(cfg.stateDir, handler);
  try {
    chmodSync(cfg.stateDir, 0o700);
  } catch {
    // not ours to change
  }
  try {
    served = await startMetrics(cfg, connector, log);
    connector.start();
  } catch (e) {
    await served?.metrics.close();
    await closeControl(server, cfg.stateDir);
    throw e;
  }
  writePidFile(cfg.stateDir);

  const onTerm = () => void stop({});
  const onHup = () => {
    try {
      reload();
    } catch (e) {
      log.error(
        { event: 'connector.reload_failed', code: (e as TetherError).code },
        `reload failed, keeping the running configuration: ${(e as Error).message}`,
      );
    }
  };
  signals.on('SIGTERM', onTerm);
  signals.on('SIGINT', onTerm);
  signals.on('SIGHUP', onHup);
  connector.on('fatal', (err) => void stop({ error: err }));
  return done;
}
