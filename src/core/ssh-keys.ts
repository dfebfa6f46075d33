import { createHash } from 'node:crypto';
import ssh2 from 'ssh2';
import { errors } from '../errors/index.js';

const { utils } = ssh2;

export interface PublicKeyInfo {
  /** e.g. "ssh-ed25519" */
  type: string;
  /** The SSH wire-format blob. */
  blob: Buffer;
  /** SHA256:… (unpadded base64), as `ssh-keygen -l` prints it. */
  fingerprint: string;
  /** Normalised OpenSSH line: "<type> <base64> [comment]". */
  line: string;
}

export function fingerprintOf(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

export function md5FingerprintOf(blob: Buffer): string {
  const hex = createHash('md5').update(blob).digest('hex');
  return `MD5:${hex.match(/../g)!.join(':')}`;
}

const PRIVATE_MARKERS = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;

/** Parses an OpenSSH public key line; refuses private keys, certificates of unknown kinds and garbage. */
export function parsePublicKey(text: string): PublicKeyInfo {
  const trimmed = text.trim();
  if (trimmed === '') throw errors.invalidPublicKey('the file is empty');
  if (PRIVATE_MARKERS.test(trimmed)) {
    throw errors.invalidPublicKey('this is a PRIVATE key; give the public key (the .pub file) instead');
  }
  const lines = trimmed.split(/\r?\n/).filter((l) => l.trim() !== '' && !l.startsWith('#'));
  if (lines.length !== 1) throw errors.invalidPublicKey('expected exactly one key line');
  const parsed = utils.parseKey(lines[0]!);
  if (parsed instanceof Error || Array.isArray(parsed)) {
    throw errors.invalidPublicKey('expected "ssh-ed25519 AAAA…", "ssh-rsa AAAA…" or "ecdsa-sha2-… AAAA…"');
  }
  if (parsed.isPrivateKey())
    throw errors.invalidPublicKey('this is a PRIVATE key; give the public key instead');
  const blob = parsed.getPublicSSH();
  const [, , ...comment] = lines[0]!.trim().split(/\s+/);
  const line = [parsed.type, blob.toString('base64'), comment.join(' ')].filter(Boolean).join(' ');
  return { type: parsed.type, blob, fingerprint: fingerprintOf(blob), line };
}

export interface KeyPair {
  /** OpenSSH private key (PEM-like "-----BEGIN OPENSSH PRIVATE KEY-----"). */
  privateKey: string;
  /** OpenSSH public key line. */
  publicKey: string;
}

/** A fresh ed25519 key pair in OpenSSH formats. */
export function generateKeyPair(comment = ''): KeyPair {
  // Unpatched ssh2 1.17 drops the first byte of a public key that starts with a zero byte
  // (1 in 256 keys) and cannot read that key back; patches/ssh2+*.patch fixes it. A key that
  // does not parse, sign and verify would be useless to the customer, so each is still checked.
  for (let attempt = 0; attempt < 16; attempt++) {
    const kp = utils.generateKeyPairSync('ed25519', { comment });
    if (isUsablePair(kp.private, kp.public)) return { privateKey: kp.private, publicKey: kp.public.trim() };
  }
  throw new Error('could not generate a usable ed25519 key pair');
}

function isUsablePair(privateKey: string, publicKey: string): boolean {
  const priv = utils.parseKey(privateKey);
  const pub = utils.parseKey(publicKey);
  if (priv instanceof Error || Array.isArray(priv) || pub instanceof Error || Array.isArray(pub))
    return false;
  const data = Buffer.from('tether key check');
  const sig = priv.sign(data);
  return (
    !(sig instanceof Error) &&
    pub.verify(data, sig) === true &&
    priv.getPublicSSH().equals(pub.getPublicSSH())
  );
}
