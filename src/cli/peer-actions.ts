import { createLogger } from '../log/index.js';
import { resolvePeerOptions, startPeer } from '../peer/index.js';
import { startHeapTrim } from '../tunnel/heap-trim.js';

export interface RunFlags {
  tunnelBind?: string;
  grpcBind?: string;
  httpBind?: string;
  logLevel?: string;
  drainTimeout?: string;
  rootCertPath?: string;
  serverCertPath?: string;
  serverKeyPath?: string;
}

/**
 * `tether peer run`: the peer daemon until SIGTERM/SIGINT (loaded only when that command runs).
 * The first signal drains (nothing new, open connections finish within --drain-timeout); a
 * second one stops at once.
 */
export async function run(flags: RunFlags): Promise<void> {
  // --grpc-bind is an alias of --tunnel-bind; every other flag is checked as given (src/config/peer.ts)
  const { grpcBind, ...given } = flags;
  const options = await resolvePeerOptions({ ...given, tunnelBind: grpcBind ?? given.tunnelBind });
  const logger = createLogger({ level: options.logLevel, name: 'peer' });
  const daemon = await startPeer(options, { logger });
  // a peer moves tunnel data too: what a transfer leaves in V8's heap goes back once it is quiet
  const stopTrim = startHeapTrim();
  await new Promise<void>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      if (signals === 1 && options.drainTimeout > 0) {
        logger.info(
          { signal, drain_timeout_ms: options.drainTimeout },
          `received ${signal}: draining (up to ${options.drainTimeout} ms; send it again to stop at once)`,
        );
        daemon.drain(options.drainTimeout).then(() => resolve(), resolve);
        return;
      }
      logger.info(
        { signal },
        signals === 1 ? 'signal received' : `received ${signal} again: stopping at once`,
      );
      daemon.stop().then(resolve, resolve);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  stopTrim();
}
