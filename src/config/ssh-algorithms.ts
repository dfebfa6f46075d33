import { createRequire } from 'node:module';
import type { Algorithms } from 'ssh2';
import { z } from 'zod';

/**
 * The SSH algorithms Tether offers and accepts: one place for the default lists of every SSH
 * endpoint (tunnel port, SSH front door, peer tunnel, and the connector and peer clients), the
 * names ssh2 can do, and the gateway.yaml `algorithms` blocks that override them.
 *
 * The defaults are what a current hardened OpenSSH server offers (ssh-audit's hardening guide):
 * curve25519 key exchange (and a 4096-bit DH group for clients without it), AES-GCM,
 * chacha20-poly1305 and AES-CTR with encrypt-then-MAC SHA-2 MACs only. No NIST-curve key
 * exchange, no SHA-1, no encrypt-and-MAC MACs, no CBC. ssh2 1.17 has no post-quantum hybrids
 * (sntrup761x25519, mlkem768x25519), so none are offered. ssh2 also sends
 * kex-strict-s-v00@openssh.com (the Terrapin countermeasure) on its own.
 */

export interface SshAlgorithmLists {
  kex: readonly string[];
  cipher: readonly string[];
  mac: readonly string[];
  server_host_key: readonly string[];
}

/** The shape ssh2's `algorithms` option takes (its own key names). */
export type Ssh2Algorithms = Algorithms;

interface Ssh2Constants {
  SUPPORTED_KEX: string[];
  SUPPORTED_CIPHER: string[];
  SUPPORTED_MAC: string[];
  SUPPORTED_SERVER_HOST_KEY: string[];
  DEFAULT_KEX: string[];
  DEFAULT_CIPHER: string[];
  DEFAULT_MAC: string[];
  DEFAULT_SERVER_HOST_KEY: string[];
}

/** What this build of ssh2 (and the OpenSSL under it) can do. */
const ssh2Constants = createRequire(import.meta.url)('ssh2/lib/protocol/constants.js') as Ssh2Constants;

export const SUPPORTED_ALGORITHMS: SshAlgorithmLists = Object.freeze({
  kex: Object.freeze([...ssh2Constants.SUPPORTED_KEX]),
  cipher: Object.freeze([...ssh2Constants.SUPPORTED_CIPHER]),
  mac: Object.freeze([...ssh2Constants.SUPPORTED_MAC]),
  server_host_key: Object.freeze([...ssh2Constants.SUPPORTED_SERVER_HOST_KEY]),
});

const HARDENED: SshAlgorithmLists = {
  kex: ['curve25519-sha256', 'curve25519-sha256@libssh.org', 'diffie-hellman-group16-sha512'],
  cipher: [
    'aes128-gcm@openssh.com',
    'aes256-gcm@openssh.com',
    'chacha20-poly1305@openssh.com',
    'aes256-ctr',
    'aes192-ctr',
    'aes128-ctr',
  ],
  mac: ['hmac-sha2-256-etm@openssh.com', 'hmac-sha2-512-etm@openssh.com'],
  server_host_key: [
    'ssh-ed25519',
    'ecdsa-sha2-nistp256',
    'ecdsa-sha2-nistp384',
    'ecdsa-sha2-nistp521',
    'rsa-sha2-512',
    'rsa-sha2-256',
  ],
};

const onlySupported = (lists: SshAlgorithmLists): SshAlgorithmLists =>
  Object.freeze({
    kex: Object.freeze(lists.kex.filter((a) => SUPPORTED_ALGORITHMS.kex.includes(a))),
    cipher: Object.freeze(lists.cipher.filter((a) => SUPPORTED_ALGORITHMS.cipher.includes(a))),
    mac: Object.freeze(lists.mac.filter((a) => SUPPORTED_ALGORITHMS.mac.includes(a))),
    server_host_key: Object.freeze(
      lists.server_host_key.filter((a) => SUPPORTED_ALGORITHMS.server_host_key.includes(a)),
    ),
  });

/** The hardened lists, less anything this ssh2/OpenSSL cannot do (e.g. chacha20 without its binding). */
export const DEFAULT_ALGORITHMS: SshAlgorithmLists = onlySupported(HARDENED);

/**
 * For the SSH front door's client to real sshd targets, which may be old: ssh2's own broader
 * defaults (they still include NIST curves, SHA-1 MACs and ssh-rsa, never CBC or group1), with
 * the hardened choices first so a current target negotiates them.
 */
export const COMPATIBLE_ALGORITHMS: SshAlgorithmLists = Object.freeze({
  kex: Object.freeze(unique([...DEFAULT_ALGORITHMS.kex, ...ssh2Constants.DEFAULT_KEX])),
  cipher: Object.freeze(unique([...DEFAULT_ALGORITHMS.cipher, ...ssh2Constants.DEFAULT_CIPHER])),
  mac: Object.freeze(unique([...DEFAULT_ALGORITHMS.mac, ...ssh2Constants.DEFAULT_MAC])),
  server_host_key: Object.freeze(
    unique([...DEFAULT_ALGORITHMS.server_host_key, ...ssh2Constants.DEFAULT_SERVER_HOST_KEY]),
  ),
});

function unique(xs: string[]): string[] {
  return [...new Set(xs)];
}

/** A mutable copy (for zod defaults, whose output type is not readonly). */
export function copyAlgorithms(lists: SshAlgorithmLists): SshAlgorithmLists {
  return {
    kex: [...lists.kex],
    cipher: [...lists.cipher],
    mac: [...lists.mac],
    server_host_key: [...lists.server_host_key],
  };
}

/** The lists in ssh2's option shape (fresh arrays: ssh2 may keep them). */
export function toSsh2Algorithms(lists: SshAlgorithmLists = DEFAULT_ALGORITHMS): Ssh2Algorithms {
  // every name was checked against ssh2's own SUPPORTED lists (schema or onlySupported)
  return {
    kex: [...lists.kex],
    cipher: [...lists.cipher],
    hmac: [...lists.mac],
    serverHostKey: [...lists.server_host_key],
    // OpenSSH's server offer: no compression before login (plain "zlib" compresses pre-auth data)
    compress: ['none', 'zlib@openssh.com'],
  } as Algorithms;
}

function algorithmList(kind: keyof SshAlgorithmLists) {
  const supported = SUPPORTED_ALGORITHMS[kind];
  return z
    .array(z.string())
    .min(1, { message: 'list at least one algorithm (leave the key out for the default)' })
    .superRefine((names, ctx) => {
      names.forEach((name, i) => {
        if (!supported.includes(name)) {
          ctx.addIssue({
            code: 'custom',
            path: [i],
            message: `unknown ${kind} algorithm "${name}"; supported: ${supported.join(', ')}`,
          });
        }
      });
    });
}

/**
 * `algorithms: { kex, cipher, mac, server_host_key }` in gateway.yaml: each list replaces the
 * default for its kind, in order of preference; a kind left out keeps its default. Names are
 * checked against what ssh2 supports, so a typo is a config error naming the key.
 */
export function algorithmsSchema(defaults: SshAlgorithmLists = DEFAULT_ALGORITHMS) {
  return z
    .strictObject({
      kex: algorithmList('kex').optional(),
      cipher: algorithmList('cipher').optional(),
      mac: algorithmList('mac').optional(),
      server_host_key: algorithmList('server_host_key').optional(),
    })
    .default({})
    .transform(
      (a): SshAlgorithmLists => ({
        kex: a.kex ?? [...defaults.kex],
        cipher: a.cipher ?? [...defaults.cipher],
        mac: a.mac ?? [...defaults.mac],
        server_host_key: a.server_host_key ?? [...defaults.server_host_key],
      }),
    );
}
