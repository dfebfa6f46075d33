import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, linkSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import ssh2 from 'ssh2';
import { fingerprintOf, generateKeyPair } from '../core/ssh-keys.js';
import { TetherError } from '../errors/index.js';

/**
 * SSH host keys of the servers Tether runs (the tunnel's and the SSH front door's): read from a
 * configured file, or generated on first start into the data dir and kept there (mode 0600).
 */
export interface HostKey {
  privateKey: string;
  fingerprint: string;
  publicKey: string;
}

/**
 * Reads a secret file, or creates it (mode 0600) with `make()` on first start. Several processes
 * may start at once (`workers`): the file appears whole or not at all (written beside it, then
 * linked into place), and a process that loses the race reads the winner's, so every process
 * uses the same secret.
 */
export function readOrCreateSecret(path: string, make: () => string): string {
  if (existsSync(path)) return readFileSync(path, 'utf8');
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, make(), { mode: 0o600, flag: 'wx' });
  try {
    chmodSync(tmp, 0o600);
    linkSync(tmp, path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  } finally {
    rmSync(tmp, { force: true });
  }
  return readFileSync(path, 'utf8');
}

export function hostKeyFrom(privateKey: string, source: string): HostKey {
  const parsed = ssh2.utils.parseKey(privateKey);
  if (parsed instanceof Error || Array.isArray(parsed) || !parsed.isPrivateKey()) {
    throw new TetherError('HOST_KEY_INVALID', `${source}: not an SSH private key`, { status: 400 });
  }
  const blob = parsed.getPublicSSH();
  return {
    privateKey,
    fingerprint: fingerprintOf(blob),
    publicKey: `${parsed.type} ${blob.toString('base64')}`,
  };
}

/**
 * The host key at `file` when the config names one (it must exist), else at `generatedPath`,
 * an ed25519 key generated there on first start. `configKey` names the setting in errors.
 */
export function loadOrCreateHostKey(o: {
  file: string | undefined;
  generatedPath: string;
  configKey: string;
  comment: string;
}): HostKey {
  if (o.file !== undefined && !existsSync(o.file)) {
    throw new TetherError('HOST_KEY_MISSING', `${o.configKey}: ${o.file} does not exist`, { status: 400 });
  }
  const path = o.file ?? o.generatedPath;
  return hostKeyFrom(
    readOrCreateSecret(path, () => generateKeyPair(o.comment).privateKey),
    path,
  );
}
