import { readFileSync } from 'node:fs';
import ssh2 from 'ssh2';
import { TetherError } from '../../../errors/index.js';
import type { TargetLogin } from './types.js';

/** Login fields as a config entry (or an access check answer) gives them. */
export interface LoginFields {
  user?: string;
  password?: string;
  private_key?: string;
  private_key_file?: string;
  host_fingerprint?: string;
  insecure_skip_host_key_check?: boolean;
  allow_port_forwarding?: boolean;
}

/** Why a private key cannot be used, or undefined when it can. */
export function privateKeyProblem(text: string): string | undefined {
  const parsed = ssh2.utils.parseKey(text);
  if (parsed instanceof Error) {
    return /encrypted|passphrase/i.test(parsed.message)
      ? 'the private key is encrypted (give an unencrypted key)'
      : 'not an SSH private key';
  }
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key?.isPrivateKey()) return 'not an SSH private key';
  return undefined;
}

/** Reads `private_key_file` and checks the key; `where` names the config entry in errors. */
export function loadPrivateKey(fields: LoginFields, where: string): string | undefined {
  let text = fields.private_key;
  let source = `${where}.private_key`;
  if (fields.private_key_file !== undefined) {
    source = `${where}.private_key_file`;
    try {
      text = readFileSync(fields.private_key_file, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? String(e);
      throw new TetherError('CONFIG_INVALID', `${source}: cannot read ${fields.private_key_file} (${code})`, {
        status: 400,
      });
    }
  }
  if (text === undefined) return undefined;
  const problem = privateKeyProblem(text);
  if (problem) throw new TetherError('CONFIG_INVALID', `${source}: ${problem}`, { status: 400 });
  return text;
}

/** A full login from config fields; the key file is read now. */
export function loginFrom(fields: LoginFields & { user: string }, where: string): TargetLogin {
  return {
    user: fields.user,
    password: fields.password,
    privateKey: loadPrivateKey(fields, where),
    hostFingerprint: fields.host_fingerprint,
    insecureSkipHostKeyCheck: fields.insecure_skip_host_key_check ?? false,
    allowPortForwarding: fields.allow_port_forwarding ?? false,
  };
}
