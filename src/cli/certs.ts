import type { Command } from 'commander';
import { TetherError } from '../errors/index.js';
import { writeCa, writeLeaf } from '../peer/index.js';

interface GenerateFlags {
  ca?: boolean;
  leaf?: boolean;
  dnsName: string[];
  ipAddress: string[];
  rootCa?: string;
  rootKey?: string;
  days?: string;
  force?: boolean;
}

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

function usage(message: string): TetherError {
  return new TetherError('USAGE', message, { status: 400 });
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
    .action(async (dir: string, flags: GenerateFlags) => {
      if (flags.ca === flags.leaf) throw usage('give exactly one of --ca or --leaf');
      let days: number | undefined;
      if (flags.days !== undefined) {
        days = Number(flags.days);
        if (!Number.isInteger(days) || days < 1 || days > 36500) {
          throw usage(`--days "${flags.days}" must be a whole number from 1 to 36500`);
        }
      }
      if (flags.ca) {
        if (flags.dnsName.length > 0 || flags.ipAddress.length > 0 || flags.rootCa || flags.rootKey) {
          throw usage('--dns-name, --ip-address, --root-ca and --root-key go with --leaf, not --ca');
        }
        const out = await writeCa(dir, { force: flags.force, days });
        process.stdout.write(
          `wrote ${out.cert}\nwrote ${out.key} (private: keep it safe, only needed to sign leaves)\n`,
        );
        return;
      }
      const missing = [...(flags.rootCa ? [] : ['--root-ca']), ...(flags.rootKey ? [] : ['--root-key'])];
      if (missing.length > 0) throw usage(`--leaf needs ${missing.join(' and ')}`);
      if (flags.dnsName.length === 0 && flags.ipAddress.length === 0) {
        throw usage('--leaf needs at least one --dns-name or --ip-address');
      }
      const out = await writeLeaf(dir, {
        dnsNames: flags.dnsName,
        ipAddresses: flags.ipAddress,
        rootCaPath: flags.rootCa!,
        rootKeyPath: flags.rootKey!,
        force: flags.force,
        days,
      });
      process.stdout.write(`wrote ${out.cert}\nwrote ${out.key}\n`);
    });
}
