import { createLogger } from '../log/index.js';
import { resolvePeerOptions, startPeer } from '../peer/index.js';
import { startHeapTrim } from '../tunnel/heap-trim.js';

export interface RunFlags {
  tunnelBind?: string;
  grpcBind?: string;
  httpBind?: string;
  logLevel?: string;
  rootCertPath?: string;
  serverCertPath?: string;
  serverKeyPath?: string;
}

/** `tether peer run`: the peer daemon until SIGTERM/SIGINT (loaded only when that command runs). */
export async function run(flags: RunFlags): Promise<void> {
  // --grpc-bind is an alias of --tunnel-bind; every other flag is checked as given (src/config/peer.ts)
  const { grpcBind, ...given } = flags;
  const options = await resolvePeerOptions({ ...given, tunnelBind: grpcBind ?? given.tunnelBind });
  const logger = createLogger({ level: options.logLevel, name: 'peer' });
  const daemon = await startPeer(options, { logger });
  // a peer moves tunnel data too: what a transfer leaves in V8's heap goes back once it is quiet
  const stopTrim = startHeapTrim();
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, 'signal received');
      daemon.stop().then(resolve, resolve);
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  stopTrim();
}
