import type { Command } from 'commander';

export function registerCerts(program: Command): void {
  program.command('certs').description('(not yet built)');
}
