import type { Command } from 'commander';
import { lazy } from './lazy.js';

/** `tether tenants …`: the command definitions; the actions load from tenants-actions.ts when run. */
export function registerTenants(program: Command): void {
  const run = <K extends keyof typeof import('./tenants-actions.js')>(name: K) =>
    lazy(() => import('./tenants-actions.js'), name);
  const tenants = program
    .command('tenants')
    .description(
      "manage tenants on a running gateway (a client of the admin API; finds it through TETHER_ADMIN_URL/TETHER_ADMIN_TOKEN or the gateway's data dir)",
    )
    .option(
      '-d, --data-dir <dir>',
      'the gateway data dir to read gateway.json and admin.token from (default: $TETHER_DATA_DIR or ./.tether)',
    );

  tenants
    .command('add <id>')
    .description('add a tenant; prints its new private key once on stdout (or stores --pub-key instead)')
    .option('--pub-key <file>', 'store this OpenSSH public key instead of generating a pair')
    .option('-f, --force', 'replace the keys of an existing tenant (ends its live sessions)')
    .option('--ports <n>', 'quota: forwards at once (default 20)')
    .option(
      '--allow-from <cidrs>',
      'callers of every front door must come from these address blocks, comma-separated (e.g. 203.0.113.0/24,2001:db8::/32)',
    )
    .option('--tunnel-from <cidrs>', "the tenant's connectors must log in from these address blocks")
    .option('--json', 'print JSON')
    .action(run('add'));

  tenants
    .command('list [id]')
    .description('list tenants, their sessions and forwards')
    .option('--json', 'print JSON')
    .action(run('list'));

  tenants
    .command('change [n] [id]')
    .description(
      'set the quota (forwards at once; 0 disables the tenant and ends its sessions) and traffic limits: ' +
        '"change <n> <id>", "change --bandwidth 10MB/s <id>" or both',
    )
    .option(
      '--bandwidth <rate>',
      'bandwidth cap each way, e.g. 10MB/s, 500KB/s, 100Mbit/s (0 or off: no cap)',
    )
    .option('--bandwidth-up <rate>', 'bandwidth cap towards the repositories only')
    .option('--bandwidth-down <rate>', 'bandwidth cap from the repositories only')
    .option('--max-connections <n>', 'concurrent connections (0 or off: no cap)')
    .option('--traffic <quota>', 'traffic quota, e.g. 500GB/month or 10GB/30d (off: none)')
    .option(
      '--balance <how>',
      "spread new connections over a repository's connectors: round-robin or least-connections",
    )
    .option(
      '--allow-from <cidrs>',
      'callers of every front door must come from these address blocks, comma-separated (off: anyone); open connections from outside them are ended',
    )
    .option(
      '--tunnel-from <cidrs>',
      "the tenant's connectors must log in from these address blocks (off: anywhere); sessions from outside them are ended",
    )
    .option('--repo <group/repo>', 'apply the limits to this repository instead of the whole tenant')
    .option('--json', 'print JSON')
    .action(run('change'));

  tenants
    .command('remove <id>')
    .description('remove a tenant: ends its sessions, deletes its keys, frees its leases')
    .action(run('remove'));

  tenants
    .command('enroll <id>')
    .description('print a one-time token (valid 24 h) for `tether connector register --token`')
    .option('--json', 'print JSON')
    .action(run('enrollment'));

  const repos = tenants
    .command('repos <id>')
    .description(
      "list a tenant's repositories by group: access-proxy address, service, destination, lease port, state, connections, and each group's key; " +
        '"repos add|remove|list" manage the repositories the operator proposes to its connectors',
    )
    .option('--json', 'print JSON')
    .action(run('repos'));
  const managed = <K extends keyof typeof import('./tenants-managed-actions.js')>(name: K) =>
    lazy(() => import('./tenants-managed-actions.js'), name);
  repos
    .command('add <id> <repository> <uri>')
    .description(
      "propose a managed repository (<group>/<repo> → service://host:port) to a tenant's connectors; each serves it only if its connect.yaml managed policy allows it",
    )
    .option('--json', 'print JSON')
    .action(managed('reposAdd'));
  repos
    .command('remove <id> <repository>')
    .description('remove a managed repository: the connectors stop serving it and end its connections')
    .action(managed('reposRemove'));
  repos
    .command('list <id>')
    .description(
      'managed repositories of a tenant and what each connector made of them (serving, refused + why)',
    )
    .option('--json', 'print JSON')
    .action(managed('reposList'));

  tenants
    .command('audit <id>')
    .description(
      "who reached the tenant's network: one record per connection (front door, repository, caller, identity, bytes, duration, outcome), newest first",
    )
    .option('--since <when>', 'only records since a time (2026-12-01T08:00:00Z) or a duration back (24h, 7d)')
    .option('--limit <n>', 'at most n records (1-1000, default 100)')
    .option('--json', 'print JSON (also names the connector that served each connection)')
    .action(lazy(() => import('./tenants-audit.js'), 'audit'));

  tenants
    .command('rotate-group-key <id> <group>')
    .description(
      'give a group a new key and print it; open front-door connections stay, new ones need the new key',
    )
    .option('--json', 'print JSON')
    .action(run('rotateGroupKey'));
}
