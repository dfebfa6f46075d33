/**
 * The gateway's host key: pinned (`gateway_fingerprint`) or trusted on first use into a
 * `known_hosts` file in the connector's state dir (OpenSSH's format, so `ssh-keygen -F`
 * and `ssh -o UserKnownHostsFile=…` read it too). A mismatch fails closed.
 */
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fingerprintOf } from '../core/ssh-keys.js';
import { TetherError } from '../errors/index.js';

export interface HostKeyPolicyOptions {
  host: string;
  port: number;
  /** SHA256:… from connect.yaml; when set, known_hosts is not consulted. */
  pinned?: string | undefined;
  /** Where the pin came from, for the message (e.g. the config file). */
  pinnedSource?: string;
  knownHostsFile: string;
}

export type HostKeyVerdict =
  | { ok: true; fingerprint: string; learned: boolean }
  | { ok: false; fingerprint: string; error: TetherError };

/** OpenSSH's name for an address: "host" on port 22, else "[host]:port". */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** The key type inside an SSH public key blob ("ssh-ed25519"). */
export function keyTypeOf(blob: Buffer): string {
  if (blob.length < 4) return 'unknown';
  const len = blob.readUInt32BE(0);
  return blob.subarray(4, 4 + len).toString('latin1');
}

interface Entry {
  names: string[];
  blob: Buffer;
  line: number;
}

function readEntries(file: string): Entry[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: Entry[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith('|') || line.startsWith('@')) return;
    const [names, , b64] = line.split(/\s+/);
    if (!names || !b64) return;
    out.push({ names: names.split(','), blob: Buffer.from(b64, 'base64'), line: i + 1 });
  });
  return out;
}

export function mismatchError(opts: {
  address: string;
  expected: string;
  got: string;
  source: string;
  fix: string;
}): TetherError {
  return new TetherError(
    'GATEWAY_HOST_KEY_MISMATCH',
    `gateway host key mismatch for ${opts.address}: expected ${opts.expected} (${opts.source}), ` +
      `but the gateway presented ${opts.got}. Refusing to connect: the connection may be intercepted, ` +
      `or the gateway's key was replaced. If the change is expected, ${opts.fix}.`,
    { status: 403 },
  );
}

/** Decides whether to trust a presented host key blob; learns it on first use. */
export function checkHostKey(opts: HostKeyPolicyOptions, blob: Buffer): HostKeyVerdict {
  const fingerprint = fingerprintOf(blob);
  const address = `${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`;
  if (opts.pinned) {
    if (fingerprint === opts.pinned) return { ok: true, fingerprint, learned: false };
    return {
      ok: false,
      fingerprint,
      error: mismatchError({
        address,
        expected: opts.pinned,
        got: fingerprint,
        source: `gateway_fingerprint${opts.pinnedSource ? ` in ${opts.pinnedSource}` : ''}`,
        fix: 'set gateway_fingerprint to the new value',
      }),
    };
  }
  const name = knownHostsName(opts.host, opts.port);
  const entries = readEntries(opts.knownHostsFile).filter((e) => e.names.includes(name));
  if (entries.some((e) => e.blob.equals(blob))) return { ok: true, fingerprint, learned: false };
  if (entries.length > 0) {
    const first = entries[0]!;
    return {
      ok: false,
      fingerprint,
      error: mismatchError({
        address,
        expected: fingerprintOf(first.blob),
        got: fingerprint,
        source: `${opts.knownHostsFile} line ${first.line}`,
        fix: `remove the line for ${name} from ${opts.knownHostsFile} (or pin gateway_fingerprint)`,
      }),
    };
  }
  mkdirSync(dirname(opts.knownHostsFile), { recursive: true, mode: 0o700 });
  appendFileSync(opts.knownHostsFile, `${name} ${keyTypeOf(blob)} ${blob.toString('base64')}\n`, {
    mode: 0o600,
  });
  return { ok: true, fingerprint, learned: true };
}
