import { randomBytes } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyPair } from '../core/ssh-keys.js';
import { type HostKey, hostKeyFrom, loadOrCreateHostKey, readOrCreateSecret } from '../tunnel/host-key.js';

/** The gateway's ed25519 host key: `tunnel.host_key`, else generated on first start into the data dir. */
export function loadHostKey(dataDir: string, file?: string): HostKey {
  return loadOrCreateHostKey({
    file,
    generatedPath: join(dataDir, 'host_key'),
    configKey: 'tunnel.host_key',
    comment: 'tether-gateway',
  });
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
