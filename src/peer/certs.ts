import { createPrivateKey, type KeyObject, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import { access, chmod, mkdir, open } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { TetherError } from '../errors/index.js';
import { readPemFileAsync } from '../tunnel/tls-material.js';

/**
 * Certificates for peer mTLS, built with @peculiar/x509 (loaded on first use: it needs the
 * reflect-metadata polyfill, and most commands never touch certificates).
 * Keys are ECDSA P-256 in PKCS#8 PEM; leaves carry both serverAuth and clientAuth, because a
 * peer uses the same certificate to serve its tunnel port and to dial other peers.
 */

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;

export interface PemPair {
  readonly cert: string;
  readonly key: string;
}

export interface LeafRequest {
  dnsNames: readonly string[];
  ipAddresses: readonly string[];
  /** Signing CA certificate and key, PEM. */
  caCert: string;
  caKey: string;
  days?: number;
}

function invalid(message: string): TetherError {
  return new TetherError('CERTS_INVALID', message, { status: 400 });
}

async function lib() {
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  x509.cryptoProvider.set(webcrypto as never); // node:crypto webcrypto is the standard Crypto
  return x509;
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f; // positive
  return b.toString('hex');
}

async function exportKey(key: webcrypto.CryptoKey): Promise<string> {
  const x509 = await lib();
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

type SigningAlgorithm =
  | { name: 'ECDSA'; namedCurve: string; hash: string }
  | { name: 'RSASSA-PKCS1-v1_5'; hash: string };

const CURVES: Record<string, { namedCurve: string; hash: string }> = {
  prime256v1: { namedCurve: 'P-256', hash: 'SHA-256' },
  secp384r1: { namedCurve: 'P-384', hash: 'SHA-384' },
  secp521r1: { namedCurve: 'P-521', hash: 'SHA-512' },
};

/** Imports a CA key in any PEM form (PKCS#8, SEC1 "EC", PKCS#1 "RSA"): ours or one brought along. */
async function importSigningKey(
  pem: string,
): Promise<{ key: webcrypto.CryptoKey; algorithm: SigningAlgorithm }> {
  let ko: KeyObject;
  try {
    ko = createPrivateKey(pem);
  } catch (e) {
    throw invalid(`--root-key is not a PEM private key: ${(e as Error).message}`);
  }
  let algorithm: SigningAlgorithm;
  if (ko.asymmetricKeyType === 'rsa') {
    algorithm = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  } else if (ko.asymmetricKeyType === 'ec' && CURVES[ko.asymmetricKeyDetails?.namedCurve ?? '']) {
    algorithm = { name: 'ECDSA', ...CURVES[ko.asymmetricKeyDetails!.namedCurve!]! };
  } else {
    throw invalid(
      `--root-key: unsupported key type ${ko.asymmetricKeyType} (use ECDSA P-256/384/521 or RSA)`,
    );
  }
  const der = ko.export({ format: 'der', type: 'pkcs8' });
  const key = await webcrypto.subtle.importKey('pkcs8', der, algorithm, false, ['sign']);
  return { key, algorithm };
}

/** A self-signed root for signing peer certificates. */
export async function generateCa(opts: { days?: number; commonName?: string } = {}): Promise<PemPair> {
  const x509 = await lib();
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${opts.commonName ?? 'Tether peer root CA'}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + (opts.days ?? 3650) * DAY_MS),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: cert.toString('pem'), key: await exportKey(keys.privateKey) };
}

/** A peer certificate with the given names, signed by the CA. */
export async function generateLeaf(req: LeafRequest): Promise<PemPair> {
  if (req.dnsNames.length === 0 && req.ipAddresses.length === 0) {
    throw invalid('a leaf certificate needs at least one --dns-name or --ip-address');
  }
  for (const ip of req.ipAddresses)
    if (isIP(ip) === 0) throw invalid(`--ip-address "${ip}" is not an IP address`);
  for (const n of req.dnsNames) {
    if (!/^[\x21-\x7e]{1,253}$/.test(n)) throw invalid(`--dns-name "${n}" is not a DNS name`);
  }
  const x509 = await lib();
  let ca: InstanceType<typeof x509.X509Certificate>;
  try {
    ca = new x509.X509Certificate(req.caCert);
  } catch (e) {
    throw invalid(`--root-ca is not a PEM certificate: ${(e as Error).message}`);
  }
  const { key: caKey, algorithm: caAlg } = await importSigningKey(req.caKey);
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cn = req.dnsNames[0] ?? req.ipAddresses[0]!;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${cn.replace(/[,=+<>#;"\\]/g, '_')}`,
    issuer: ca.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + (req.days ?? 825) * DAY_MS),
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: caAlg,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.SubjectAlternativeNameExtension([
        ...req.dnsNames.map((value) => ({ type: 'dns' as const, value })),
        ...req.ipAddresses.map((value) => ({ type: 'ip' as const, value })),
      ]),
      await x509.AuthorityKeyIdentifierExtension.create(ca),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  // The signature must check out against the CA we were given (a key from another CA would not).
  if (!new X509Certificate(cert.toString('pem')).verify(new X509Certificate(req.caCert).publicKey)) {
    throw invalid('--root-key does not belong to --root-ca');
  }
  return { cert: cert.toString('pem'), key: await exportKey(keys.privateKey) };
}

/** Writes a file; the private key gets mode 0600 even when it replaces an existing file. */
async function writeFileMode(path: string, data: string, mode: number, force: boolean): Promise<void> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(path, force ? 'w' : 'wx', mode);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new TetherError('CERTS_EXIST', `${path} already exists (use --force to replace it)`, {
        status: 409,
      });
    }
    throw invalid(`cannot write ${path}: ${(e as Error).message}`);
  }
  try {
    await fh.chmod(mode);
    await fh.writeFile(data);
  } finally {
    await fh.close();
  }
  await chmod(path, mode);
}

async function ensureDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (e) {
    throw invalid(`cannot create ${dir}: ${(e as Error).message}`);
  }
}

async function writePair(
  dir: string,
  base: string,
  pair: PemPair,
  force: boolean,
): Promise<{ cert: string; key: string }> {
  await ensureDir(dir);
  const cert = join(dir, `${base}.cert`);
  const key = join(dir, `${base}.key`);
  if (!force) {
    // Refuse before writing anything, so a half-replaced pair never happens.
    for (const p of [cert, key]) {
      const exists = await access(p).then(
        () => true,
        () => false,
      );
      if (exists)
        throw new TetherError('CERTS_EXIST', `${p} already exists (use --force to replace it)`, {
          status: 409,
        });
    }
  }
  await writeFileMode(key, pair.key, 0o600, force);
  await writeFileMode(cert, pair.cert, 0o644, force);
  return { cert, key };
}

/** `certs generate --ca DIR`: DIR/root.cert and DIR/root.key. */
export async function writeCa(dir: string, opts: { force?: boolean; days?: number } = {}) {
  return writePair(dir, 'root', await generateCa({ days: opts.days }), opts.force ?? false);
}

async function readInput(flag: string, path: string): Promise<string> {
  return (await readPemFileAsync(path, { what: flag, code: 'CERTS_INVALID' })).toString('utf8');
}

/** `certs generate --leaf … DIR`: DIR/leaf.cert and DIR/leaf.key, signed by the given CA. */
export async function writeLeaf(
  dir: string,
  opts: {
    dnsNames: readonly string[];
    ipAddresses: readonly string[];
    rootCaPath: string;
    rootKeyPath: string;
    force?: boolean;
    days?: number;
  },
) {
  const caCert = await readInput('--root-ca', opts.rootCaPath);
  const caKey = await readInput('--root-key', opts.rootKeyPath);
  const pair = await generateLeaf({
    dnsNames: opts.dnsNames,
    ipAddresses: opts.ipAddresses,
    caCert,
    caKey,
    days: opts.days,
  });
  return writePair(dir, 'leaf', pair, opts.force ?? false);
}
