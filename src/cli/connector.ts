import type { Command } from 'commander';

export function registerConnector(program: Command): void {
  program.command('connector').description('(not yet built)');
}
