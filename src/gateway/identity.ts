import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { fingerprintOf, generateKeyPair } from '../core/ssh-keys.js';
import { TetherError } from '../errors/index.js';

/** Reads a secret file, or creates it (mode 0600) with `make()` on first start. */
export function readOrCreateSecret(path: string, make: () => string): string {
  if (existsSync(path)) return readFileSync(path, 'utf8');
  const value = make();
  writeFileSync(path, value, { mode: 0o600, flag: 'wx' });
  chmodSync(path, 0o600);
  return value;
}

export interface HostKey {
  privateKey: string;
  fingerprint: string;
  publicKey: string;
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

/** The gateway's ed25519 host key: generated on first start into the data dir. */
export function loadHostKey(dataDir: string, file?: string): HostKey {
  const path = file ?? join(dataDir, 'host_key');
  if (file && !existsSync(file)) {
    throw new TetherError('HOST_KEY_MISSING', `tunnel.host_key: ${file} does not exist`, { status: 400 });
  }
  const pem = readOrCreateSecret(path, () => generateKeyPair('tether-gateway').privateKey);
  return hostKeyFrom(pem, path);
}

export function loadAdminToken(dataDir: string, file?: string): string {
  const path = file ?? join(dataDir, 'admin.token');
  return readOrCreateSecret(path, () => `${randomBytes(32).toString('base64url')}\n`).trim();
}

/** In a cluster every member presents one identity: the host key and admin token live in the shared store. */
export async function sharedIdentity(
  store: { initSetting(name: string, value: string): Promise<string> },
  dataDir: string,
  tokenFile?: string,
): Promise<{ hostKey: HostKey; adminToken: string }> {
  const pem = await store.initSetting('host_key', generateKeyPair('tether-gateway').privateKey);
  const adminToken = await store.initSetting('admin_token', randomBytes(32).toString('base64url'));
  const path = tokenFile ?? join(dataDir, 'admin.token');
  writeFileSync(path, `${adminToken}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
  return { hostKey: hostKeyFrom(pem, 'the cluster store'), adminToken };
}
