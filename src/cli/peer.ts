import type { Command } from 'commander';
import {
  DEFAULT_HTTP_BIND,
  DEFAULT_PEER_DRAIN_TIMEOUT,
  DEFAULT_TUNNEL_BIND,
  LOG_LEVELS,
} from '../config/peer-defaults.js';
import { lazy } from './lazy.js';

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
    .option(
      '--drain-timeout <duration>',
      'on SIGTERM/SIGINT: take nothing new and let open connections finish this long ("0": cut at once; a second signal cuts too)',
      DEFAULT_PEER_DRAIN_TIMEOUT,
    )
    .option('--root-cert-path <path>', 'PEM root certificate peers must chain to (mTLS; with the two below)')
    .option(
      '--server-cert-path <path>',
      'PEM certificate of this peer (tunnel, API and outgoing connections)',
    )
    .option('--server-key-path <path>', 'PEM private key of --server-cert-path')
    .action(lazy(() => import('./peer-actions.js'), 'run'));
}
