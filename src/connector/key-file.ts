/**
 * The connector's private key: read it, refuse it when others can read it (as OpenSSH does),
 * and write new pairs with safe modes. The key's text is never logged.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import ssh2 from 'ssh2';
import { fingerprintOf, generateKeyPair } from '../core/ssh-keys.js';
import { type ErrorCode, TetherError } from '../errors/index.js';

export interface LoadedKey {
  path: string;
  /** OpenSSH private key text. */
  privateKey: string;
  /** "ssh-ed25519 AAAA…" */
  publicKey: string;
  fingerprint: string;
}

export function keyError(code: ErrorCode, message: string): TetherError {
  return new TetherError(code, message, { status: 400 });
}

/** Reads and checks the private key named by `ssh_key`. */
export function readPrivateKey(path: string): LoadedKey {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw keyError(
        'SSH_KEY_MISSING',
        `ssh_key ${path}: file not found (run "tether connector init" to create a key pair, ` +
          'or set ssh_key to the private key your gateway operator gave you)',
      );
    }
    throw keyError('SSH_KEY_UNREADABLE', `ssh_key ${path}: cannot read it: ${(e as Error).message}`);
  }
  if (!st.isFile()) throw keyError('SSH_KEY_UNREADABLE', `ssh_key ${path}: not a file`);
  if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
    throw keyError(
      'SSH_KEY_UNPROTECTED',
      `WARNING: UNPROTECTED PRIVATE KEY FILE! Permissions ${mode} for '${path}' are too open. ` +
        'It is required that your private key files are NOT accessible by others. ' +
        `This private key will be ignored. Fix it with: chmod 600 ${path}`,
    );
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw keyError(
      'SSH_KEY_UNREADABLE',
      `ssh_key ${path}: cannot read it: ${code === 'EACCES' ? "permission denied (run the connector as the key file's owner)" : (e as Error).message}`,
    );
  }
  const parsed = ssh2.utils.parseKey(text);
  if (parsed instanceof Error) {
    const encrypted = /encrypted|passphrase/i.test(parsed.message);
    throw keyError(
      'SSH_KEY_INVALID',
      encrypted
        ? `ssh_key ${path}: the key is protected by a passphrase; the connector needs a key without one`
        : `ssh_key ${path}: not an SSH private key (${parsed.message})`,
    );
  }
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key?.isPrivateKey()) {
    throw keyError(
      'SSH_KEY_INVALID',
      `ssh_key ${path}: this is a public key; ssh_key must name the PRIVATE key`,
    );
  }
  const blob = key.getPublicSSH();
  return {
    path,
    privateKey: text,
    publicKey: `${key.type} ${blob.toString('base64')}`,
    fingerprint: fingerprintOf(blob),
  };
}

/** Writes a fresh ed25519 pair: `path` (0600) and `path.pub` (0644). */
export function writeNewKeyPair(path: string, comment: string): { publicKey: string; fingerprint: string } {
  mkdirSync(dirname(path), { recursive: true });
  const kp = generateKeyPair(comment);
  for (const p of [path, `${path}.pub`]) if (existsSync(p)) unlinkSync(p);
  writeFileSync(path, kp.privateKey.endsWith('\n') ? kp.privateKey : `${kp.privateKey}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
  writeFileSync(`${path}.pub`, `${kp.publicKey}\n`, { mode: 0o644 });
  const loaded = readPrivateKey(path);
  return { publicKey: kp.publicKey, fingerprint: loaded.fingerprint };
}

/** Deletes the key pair (after `unregister`). */
export function deleteKeyPair(path: string): string[] {
  const removed: string[] = [];
  for (const p of [path, `${path}.pub`]) {
    if (existsSync(p)) {
      unlinkSync(p);
      removed.push(p);
    }
  }
  return removed;
}
