import type { Command } from 'commander';

export function registerGateway(program: Command): void {
  program.command('gateway').description('(not yet built)');
}
