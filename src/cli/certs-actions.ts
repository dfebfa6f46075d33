import { TetherError } from '../errors/index.js';
import { writeCa, writeLeaf } from '../peer/index.js';

export interface GenerateFlags {
  ca?: boolean;
  leaf?: boolean;
  dnsName: string[];
  ipAddress: string[];
  rootCa?: string;
  rootKey?: string;
  days?: string;
  force?: boolean;
}

function usage(message: string): TetherError {
  return new TetherError('USAGE', message, { status: 400 });
}

/** `tether certs generate` (loaded only when that command runs). */
export async function generate(dir: string, flags: GenerateFlags): Promise<void> {
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
}
