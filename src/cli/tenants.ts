import type { Command } from 'commander';

export function registerTenants(program: Command): void {
  program.command('tenants').description('(not yet built)');
}
