/**
 * Test certificates (@peculiar/x509): a CA, and server certificates it signs with any names and
 * any validity window, including ones that expired long ago.
 */
import { execFileSync } from 'node:child_process';
import { webcrypto } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 86_400_000;

async function lib() {
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  x509.cryptoProvider.set(webcrypto as never);
  return x509;
}

async function keyPem(key: webcrypto.CryptoKey): Promise<string> {
  const x509 = await lib();
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

export interface TestCa {
  name: string;
  certFile: string;
  certPem: string;
  keys: webcrypto.CryptoKeyPair;
}

let serial = 1;

export async function makeCa(dir: string, name = 'Tether Test CA'): Promise<TestCa> {
  const x509 = await lib();
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: (serial++).toString(16).padStart(2, '0'),
    name: `CN=${name}`,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 30 * DAY),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const certPem = cert.toString('pem');
  const certFile = join(dir, `${name.replace(/\W+/g, '-').toLowerCase()}.crt`);
  writeFileSync(certFile, certPem);
  return { name, certFile, certPem, keys };
}

export interface ServerCert {
  certFile: string;
  keyFile: string;
}

/** A server certificate for `names` (DNS names or IP addresses), signed by `ca`. */
export async function makeServerCert(
  dir: string,
  ca: TestCa,
  opts: { names: string[]; file: string; notBefore?: Date; notAfter?: Date },
): Promise<ServerCert> {
  const x509 = await lib();
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const caCert = new x509.X509Certificate(ca.certPem);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: (serial++).toString(16).padStart(2, '0'),
    subject: `CN=${opts.names[0]}`,
    issuer: caCert.subject,
    notBefore: opts.notBefore ?? new Date(now - DAY),
    notAfter: opts.notAfter ?? new Date(now + 7 * DAY),
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(
        opts.names.map((value) => ({ type: isIP(value) ? ('ip' as const) : ('dns' as const), value })),
      ),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  const certFile = join(dir, `${opts.file}.crt`);
  const keyFile = join(dir, `${opts.file}.key`);
  writeFileSync(certFile, cert.toString('pem'));
  writeFileSync(keyFile, await keyPem(keys.privateKey), { mode: 0o600 });
  return { certFile, keyFile };
}

/**
 * A self-signed P-256 certificate for CN=localhost made by Debian's `openssl`, valid `days`,
 * with `san` as subjectAltName when given (e.g. "DNS:localhost,IP:127.0.0.1"); written to
 * `dir`/cert.pem and `dir`/key.pem.
 */
export function selfSignedCert(
  dir: string,
  opts: { days?: number; san?: string } = {},
): { certFile: string; keyFile: string; cert: Buffer; key: Buffer } {
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'],
      ...['-days', String(opts.days ?? 1), '-subj', '/CN=localhost', '-keyout', keyFile, '-out', certFile],
      ...(opts.san ? ['-addext', `subjectAltName=${opts.san}`] : []),
    ],
    { stdio: 'ignore' },
  );
  return { certFile, keyFile, cert: readFileSync(certFile), key: readFileSync(keyFile) };
}
