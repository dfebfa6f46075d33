import type { Command } from 'commander';

export function registerPeer(program: Command): void {
  program.command('peer').description('(not yet built)');
}
