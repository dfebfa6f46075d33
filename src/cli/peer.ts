import type { Command } from 'commander';
import { createLogger } from '../log/index.js';
import {
  DEFAULT_HTTP_BIND,
  DEFAULT_TUNNEL_BIND,
  LOG_LEVELS,
  parseLogLevel,
  resolvePeerOptions,
  startPeer,
} from '../peer/index.js';

interface RunFlags {
  tunnelBind?: string;
  grpcBind?: string;
  httpBind?: string;
  logLevel?: string;
  rootCertPath?: string;
  serverCertPath?: string;
  serverKeyPath?: string;
}

export function registerPeer(program: Command): void {
  const peer = program
    .command('peer')
    .description('link this machine and another in either direction (HTTP API /expose, optional mTLS)')
    // Usage errors reach bin/tether.ts (exit code 2) instead of commander's own process.exit(1).
    .exitOverride();
  peer
    .command('run')
    .description('run the peer daemon: a tunnel port for other peers and the HTTP API')
    .exitOverride()
    .option(
      '--tunnel-bind <addr>',
      `address other peers dial ("host:port", ":port" = every interface)`,
      DEFAULT_TUNNEL_BIND,
    )
    .option('--grpc-bind <addr>', 'alias of --tunnel-bind, for command lines written for the gRPC connector')
    .option('--http-bind <addr>', 'address of the HTTP API', DEFAULT_HTTP_BIND)
    .option('--log-level <level>', `log level: ${LOG_LEVELS.join(', ')}`, 'info')
    .option('--root-cert-path <path>', 'PEM root certificate peers must chain to (mTLS; with the two below)')
    .option(
      '--server-cert-path <path>',
      'PEM certificate of this peer (tunnel, API and outgoing connections)',
    )
    .option('--server-key-path <path>', 'PEM private key of --server-cert-path')
    .action(async (flags: RunFlags) => {
      const level = parseLogLevel(flags.logLevel);
      const options = await resolvePeerOptions({
        ...flags,
        tunnelBind: flags.grpcBind ?? flags.tunnelBind,
        logLevel: level,
      });
      const logger = createLogger({ level: options.logLevel, name: 'peer' });
      const daemon = await startPeer(options, { logger });
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          logger.info({ signal }, 'signal received');
          daemon.stop().then(resolve, resolve);
        };
        process.once('SIGINT', () => stop('SIGINT'));
        process.once('SIGTERM', () => stop('SIGTERM'));
      });
    });
}
