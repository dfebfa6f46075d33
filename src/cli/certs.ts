import type { Command } from 'commander';
import { lazy } from './lazy.js';

/** Repeatable flag; "a,b" counts as two values, as with the gRPC connector's flags. */
function collect(value: string, previous: string[]): string[] {
  return [
    ...previous,
    ...value
      .split(',')
      .map((v) => v.trim())
      .filter((v) => v !== ''),
  ];
}

export function registerCerts(program: Command): void {
  // exitOverride: usage errors reach bin/tether.ts (exit code 2) instead of process.exit(1).
  const certs = program.command('certs').description('certificates for peer mTLS').exitOverride();
  certs
    .command('generate')
    .description('write a root CA (--ca) or a peer certificate signed by it (--leaf) into DIR')
    .exitOverride()
    .argument('<dir>', 'output directory (created if missing)')
    .option('--ca', 'generate DIR/root.cert and DIR/root.key')
    .option('--leaf', 'generate DIR/leaf.cert and DIR/leaf.key, signed by --root-ca/--root-key')
    .option('--dns-name <name>', 'DNS name for the leaf certificate (repeatable)', collect, [])
    .option('--ip-address <ip>', 'IP address for the leaf certificate (repeatable)', collect, [])
    .option('--root-ca <file>', 'CA certificate that signs the leaf')
    .option('--root-key <file>', 'private key of --root-ca')
    .option('--days <n>', 'validity in days (default: 3650 for --ca, 825 for --leaf)')
    .option('-f, --force', 'replace existing files')
    .action(lazy(() => import('./certs-actions.js'), 'generate'));
}
