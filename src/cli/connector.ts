import type { Command } from 'commander';
import { lazy } from './lazy.js';

const CONFIG_HELP = 'connect.yaml (default: $TETHER_CONNECT_CONFIG or ./connect.yaml)';

/** `tether connector …`: the command definitions; the actions load from connector-actions.ts when run. */
export function registerConnector(program: Command): void {
  const run = <K extends keyof typeof import('./connector-actions.js')>(name: K) =>
    lazy(() => import('./connector-actions.js'), name);
  const connector = program
    .command('connector')
    .description(
      'run inside the private network: forward the repositories in connect.yaml through the gateway',
    );

  connector
    .command('init')
    .description('write a commented connect.yaml and a new ed25519 key pair next to it')
    .option('-c, --config <file>', CONFIG_HELP)
    .option('--gateway <host:port>', "the gateway's SSH address")
    .option('--tenant <id>', 'your tenant id (register fills it in otherwise)')
    .option('--fingerprint <SHA256:…>', "the gateway's host key fingerprint, to pin it")
    .option('-f, --force', 'overwrite an existing connect.yaml and key')
    .action(run('init'));

  connector
    .command('register')
    .description(
      'enroll this connector\'s key with its tenant, using a one-time token from "tether tenants enroll"',
    )
    .requiredOption('--token <token>', 'one-time enrollment token (valid 24 h, single use)')
    .option('-c, --config <file>', CONFIG_HELP)
    .action(run('register'));

  connector
    .command('run')
    .description(
      'run in the foreground (container entrypoint, systemd ExecStart); SIGHUP reloads connect.yaml',
    )
    .option('-c, --config <file>', CONFIG_HELP)
    .action(run('run'));

  connector
    .command('start')
    .description('run in the background (pid file, log and control socket in the state dir)')
    .option('-c, --config <file>', CONFIG_HELP)
    .action(run('start'));

  connector
    .command('stop')
    .description('stop the background connector')
    .option('-c, --config <file>', CONFIG_HELP)
    .action(run('stop'));

  connector
    .command('status')
    .description('session, gateway fingerprint, and per repository: lease port, state, connections, bytes')
    .option('-c, --config <file>', CONFIG_HELP)
    .option('--json', 'machine-readable output')
    .action(run('status'));

  connector
    .command('reload')
    .description('apply connect.yaml changes: new repositories are forwarded, removed ones cancelled')
    .option('-c, --config <file>', CONFIG_HELP)
    .action(run('reload'));

  connector
    .command('config')
    .description('print the effective configuration (nothing secret)')
    .option('-c, --config <file>', CONFIG_HELP)
    .option('--json', 'JSON instead of YAML')
    .action(run('config'));

  connector
    .command('ping')
    .description(
      'round trip to the gateway in ms, and the transport and path used (non-zero exit when unreachable)',
    )
    .option('-c, --config <file>', CONFIG_HELP)
    .option('--json', 'machine-readable output')
    .action(run('ping'));

  connector
    .command('unregister')
    .description("remove this connector's key from its tenant on the gateway, then delete the key files")
    .option('-c, --config <file>', CONFIG_HELP)
    .action(run('unregister'));
}
