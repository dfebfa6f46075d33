/**
 * TLS material for every part of the tunnel stack: the one place that reads certificate, key and
 * CA files (peer mode's mTLS files, the tunnel's TLS and WebSocket listeners, the connector's
 * gateway_ca, `tether certs generate` inputs, the HTTP front door's certificate), each failure
 * named by the flag or config key that gave the path.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { checkServerIdentity, createSecureContext, type PeerCertificate, type TLSSocket } from 'node:tls';
import { type ErrorCode, TetherError } from '../errors/index.js';

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

/** Where a path came from and which error a failure to read it raises. */
export interface PemSource {
  /** A CLI flag ("--root-cert-path") or a config key ("tunnel.tls.cert", "gateway_ca"). */
  readonly what: string;
  readonly code: ErrorCode;
  readonly status?: number;
}

function readWords(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT'
    ? 'no such file'
    : code === 'EACCES'
      ? 'permission denied'
      : code === 'EISDIR'
        ? 'is a directory'
        : (e as Error).message;
}

/**
 * The error for a file that cannot be read. A flag reads "cannot read --flag PATH: no such file";
 * a config key reads "key: cannot read PATH (ENOENT)".
 */
export function unreadable(src: PemSource, path: string, e: unknown): TetherError {
  const message = src.what.startsWith('--')
    ? `cannot read ${src.what} ${path}: ${readWords(e)}`
    : `${src.what}: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? String(e)})`;
  return new TetherError(src.code, message, { status: src.status ?? 400, cause: e });
}

/** Reads a PEM file (certificate, key or CA) at start; a failure names where the path came from. */
export function readPemFile(path: string, src: PemSource): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw unreadable(src, path, e);
  }
}

/** `readPemFile`, without blocking the event loop. */
export async function readPemFileAsync(path: string, src: PemSource): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (e) {
    throw unreadable(src, path, e);
  }
}

/**
 * A CA bundle for checking a server (connect.yaml `gateway_ca`): readable, PEM, and accepted by
 * node:tls.
 */
export function readCaFile(path: string, src: PemSource): Buffer {
  const pem = readPemFile(path, src);
  const fail = (m: string) =>
    new TetherError(src.code, `${src.what}: ${path}${m}`, { status: src.status ?? 400 });
  if (!/-----BEGIN CERTIFICATE-----/.test(pem.toString('latin1'))) throw fail(' holds no PEM certificate');
  try {
    createSecureContext({ ca: pem });
  } catch (e) {
    throw fail(`: ${(e as Error).message}`);
  }
  return pem;
}

const PEER: Omit<PemSource, 'what'> = { code: 'PEER_TLS_INVALID' };
const readPem = (flag: string, path: string) => readPemFileAsync(path, { ...PEER, what: flag });

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
 * Server identity check for peer mode's tunnel client: the usual host name / IP check, and also a DNS
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
