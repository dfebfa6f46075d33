import type { Command } from 'commander';
import { lazy } from './lazy.js';

export function registerGateway(program: Command): void {
  program
    .command('gateway')
    .description(
      'run the gateway (the main job): SSH tunnel endpoint, lease ports, admin API and front doors',
    )
    .option(
      '-c, --config <file>',
      'gateway.yaml (default: embedded defaults; TETHER_DATA_DIR sets the data dir)',
    )
    .action(lazy(() => import('./gateway-actions.js'), 'run'));
}
