import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { checkServerIdentity, createSecureContext, type PeerCertificate, type TLSSocket } from 'node:tls';
import { TetherError } from '../errors/index.js';

/** The three files of `--root-cert-path`, `--server-cert-path`, `--server-key-path`. */
export interface TlsPaths {
  readonly rootCertPath: string;
  readonly serverCertPath: string;
  readonly serverKeyPath: string;
}

/** Loaded and checked PEM material. The key never goes to a log. */
export interface TlsMaterial {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
  /** Subject of our own certificate, for logs. */
  readonly subject: string;
}

function startupError(message: string, cause?: unknown): TetherError {
  return new TetherError('PEER_TLS_INVALID', message, { status: 400, cause });
}

async function readPem(flag: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EACCES'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'is a directory'
            : (e as Error).message;
    throw startupError(`cannot read ${flag} ${path}: ${why}`, e);
  }
}

function parseCertificates(flag: string, path: string, pem: Buffer): X509Certificate[] {
  const blocks = pem.toString('utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  if (!blocks) throw startupError(`${flag} ${path} holds no PEM certificate`);
  return blocks.map((b) => {
    try {
      return new X509Certificate(b);
    } catch (e) {
      throw startupError(
        `${flag} ${path} holds a certificate that cannot be parsed: ${(e as Error).message}`,
        e,
      );
    }
  });
}

/**
 * Reads the three files and checks what can be checked before the first connection: each is
 * readable PEM, the key belongs to the certificate, and the certificate comes from the root.
 */
export async function loadTlsMaterial(paths: TlsPaths): Promise<TlsMaterial> {
  const ca = await readPem('--root-cert-path', paths.rootCertPath);
  const cert = await readPem('--server-cert-path', paths.serverCertPath);
  const key = await readPem('--server-key-path', paths.serverKeyPath);
  const roots = parseCertificates('--root-cert-path', paths.rootCertPath, ca);
  const chain = parseCertificates('--server-cert-path', paths.serverCertPath, cert);
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key.toString('utf8'))) {
    throw startupError(`--server-key-path ${paths.serverKeyPath} holds no PEM private key`);
  }
  try {
    createSecureContext({ ca, cert, key });
  } catch (e) {
    const msg = (e as Error).message;
    const why = /key values mismatch/i.test(msg) ? 'the key does not belong to the certificate' : msg;
    throw startupError(
      `--server-key-path ${paths.serverKeyPath} cannot be used with --server-cert-path ${paths.serverCertPath}: ${why}`,
      e,
    );
  }
  const leaf = chain[0]!;
  const issuers = [...chain.slice(1), ...roots];
  if (!issuers.some((c) => leaf.checkIssued(c) && leaf.verify(c.publicKey))) {
    throw startupError(
      `--server-cert-path ${paths.serverCertPath} is not signed by --root-cert-path ${paths.rootCertPath}; ` +
        'peers would refuse it (generate it with `tether certs generate --leaf --root-ca … --root-key …`)',
    );
  }
  return Object.freeze({ ca, cert, key, subject: leaf.subject.replace(/\n/g, ', ') });
}

/**
 * Server identity check for the tunnel client: the usual host name / IP check, and also a DNS
 * name written as "host:port", which the connector this mode replaces used as the server name.
 */
export function peerIdentityCheck(port: number) {
  return (host: string, cert: PeerCertificate): Error | undefined => {
    const err = checkServerIdentity(host, cert);
    if (!err) return undefined;
    const names = (cert.subjectaltname ?? '').split(', ');
    if (names.includes(`DNS:${host}:${port}`)) return undefined;
    return err;
  };
}

/** Words for a TLS failure, from either side of the handshake. */
export function describeTlsError(e: unknown, side: 'client' | 'server'): string {
  const err = e as NodeJS.ErrnoException;
  const code = err.code ?? '';
  const msg = err.message ?? String(e);
  if (code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE' || /did not return a certificate/i.test(msg)) {
    return 'the peer presented no client certificate';
  }
  if (/alert certificate required/i.test(msg)) return 'the remote peer requires a client certificate';
  if (/wrong version number|packet length too long|unknown protocol|http request/i.test(msg)) {
    return side === 'server'
      ? 'the peer does not speak TLS (is it running without certificates?)'
      : 'the remote peer does not speak TLS (is it running without certificates?)';
  }
  if (side === 'server' && (code === 'ECONNRESET' || /socket hang up/i.test(msg))) {
    return 'the peer closed the connection during the TLS handshake (it may not trust our certificate)';
  }
  if (/alert unknown ca|alert bad certificate|alert decrypt error/i.test(msg)) {
    return `the remote peer refused our certificate (not signed by the root it trusts): ${msg}`;
  }
  if (
    [
      'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
      'SELF_SIGNED_CERT_IN_CHAIN',
      'DEPTH_ZERO_SELF_SIGNED_CERT',
      'UNABLE_TO_GET_ISSUER_CERT',
      'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
      'CERT_SIGNATURE_FAILURE',
    ].includes(code) ||
    /unable to verify|certificate signature failure|self[- ]signed/i.test(msg)
  ) {
    return side === 'server'
      ? `the client certificate is not signed by the configured root (${code || msg})`
      : `the remote peer's certificate is not signed by our root (${msg})`;
  }
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID')
    return `certificate not valid now (${msg})`;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID')
    return `the remote peer's certificate does not name this host (${msg})`;
  return msg;
}

/** The subject of the certificate a peer presented, for logs. */
export function peerSubject(socket: TLSSocket): string | undefined {
  const c = socket.getPeerCertificate();
  if (!c?.subject) return undefined;
  return Object.entries(c.subject)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(', ');
}
