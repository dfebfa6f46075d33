/**
 * The connector's composition root: config → logger → supervisor → control socket → pid
 * file → signals. `tether connector run` is this function.
 */
import { chmodSync } from 'node:fs';
import { type ConnectConfig, loadConnectConfig } from '../config/connect.js';
import { TetherError } from '../errors/index.js';
import { createLogger, type Logger } from '../log/index.js';
import { type ControlCommand, closeControl, listenControl } from './control-socket.js';
import { removePidFile, writePidFile } from './daemon.js';
import { Connector } from './supervisor.js';

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
    if (stopping) return;
    stopping = true;
    await connector.stop();
    await closeControl(server, cfg.stateDir);
    removePidFile(cfg.stateDir);
    signals.off('SIGTERM', onTerm);
    signals.off('SIGINT', onTerm);
    signals.off('SIGHUP', onHup);
    log.info({ event: 'connector.stopped' }, 'connector stopped');
    finish(result);
  };

  const handler = async (cmd: ControlCommand): Promise<unknown> => {
    switch (cmd) {
      case 'status':
        return connector.status();
      case 'reload':
        return connector.reload();
      case 'ping':
        return { ms: await connector.ping(), gateway: connector.status().gateway };
      case 'stop':
        setImmediate(() => void stop({}));
        return { pid: process.pid };
      default:
        throw new TetherError('BAD_REQUEST', `unknown command ${JSON.stringify(cmd)}`, { status: 400 });
    }
  };

  const server = await listenControl(cfg.stateDir, handler);
  try {
    chmodSync(cfg.stateDir, 0o700);
  } catch {
    // not ours to change
  }
  try {
    connector.start();
  } catch (e) {
    await closeControl(server, cfg.stateDir);
    throw e;
  }
  writePidFile(cfg.stateDir);

  const onTerm = () => void stop({});
  const onHup = () => {
    try {
      connector.reload();
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
