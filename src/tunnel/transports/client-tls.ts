/**
 * The client side of the TLS transport: TLS on an open socket, the gateway's certificate checked
 * before a byte of SSH is sent, and the user's explanation of each refusal.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { TetherError } from '../../errors/index.js';
import type { Logger } from '../../log/index.js';
import { fail } from './client-common.js';

const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
]);

function names(cert: tls.PeerCertificate | undefined): string {
  if (!cert) return 'unknown';
  const san = cert.subjectaltname?.replace(/IP Address:/g, 'IP:');
  return san || (cert.subject?.CN ? `CN=${cert.subject.CN}` : 'no names');
}

function dn(x: tls.Certificate | undefined): string {
  if (!x) return '?';
  return x.CN ? `CN=${x.CN}` : x.O ? `O=${x.O}` : '?';
}

/** The user's explanation of a certificate node:tls did not accept. */
export function certificateProblem(
  code: string,
  cert: tls.PeerCertificate | undefined,
  ctx: { gateway: string; host: string; ca: string | undefined; viaProxy: boolean },
): TetherError {
  const who = `the gateway's TLS certificate (${dn(cert?.subject)}, issued by ${dn(cert?.issuer)})`;
  if (code === 'CERT_HAS_EXPIRED') {
    return fail(
      'GATEWAY_TLS_EXPIRED',
      `${ctx.gateway}: ${who} expired on ${cert?.valid_to ?? '?'}: the gateway's operator must renew it`,
    );
  }
  if (code === 'CERT_NOT_YET_VALID') {
    return fail(
      'GATEWAY_TLS_NOT_YET_VALID',
      `${ctx.gateway}: ${who} is not valid before ${cert?.valid_from ?? '?'} (is this machine's clock right?)`,
    );
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return fail(
      'GATEWAY_TLS_NAME_MISMATCH',
      `${ctx.gateway}: ${who} is for ${names(cert)}, not ${ctx.host}: use a gateway address the certificate names`,
    );
  }
  if (UNTRUSTED.has(code)) {
    const store = ctx.ca ? `the CA in gateway_ca (${ctx.ca})` : "this system's CA store";
    return fail(
      'GATEWAY_TLS_UNTRUSTED',
      `${ctx.gateway}: ${who} is not signed by ${store} (${code}): set gateway_ca to the CA that signed it` +
        (ctx.viaProxy ? ' (a TLS-inspecting proxy signs with its own CA)' : ''),
    );
  }
  return fail('GATEWAY_TLS_REFUSED', `${ctx.gateway}: ${who} was refused: ${code}`);
}

function handshakeProblem(e: Error & { code?: string; reason?: string }, gateway: string): TetherError {
  const code = e.code ?? '';
  if (
    code === 'ERR_SSL_WRONG_VERSION_NUMBER' ||
    code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG' ||
    code === 'ERR_SSL_RECORD_LAYER_FAILURE' ||
    /wrong version number|packet length too long|unknown protocol/.test(e.message)
  ) {
    return fail(
      'GATEWAY_NOT_TLS',
      `${gateway} does not speak TLS (it answered in plain text; is that the plain SSH port? ` +
        'use "host:port" without tls://, or the gateway\'s TLS port)',
    );
  }
  if (code === 'ECONNRESET' || /disconnected before secure TLS/.test(e.message)) {
    return fail(
      'GATEWAY_TLS_FAILED',
      `${gateway}: the connection closed during the TLS handshake (is that port a TLS listener? the gateway's log says why)`,
      502,
      e,
    );
  }
  return fail('GATEWAY_TLS_FAILED', `${gateway}: TLS handshake failed: ${e.reason ?? e.message}`, 502, e);
}

export interface TlsContext {
  host: string;
  port: number;
  gateway: string;
  ca: Buffer | undefined;
  caFile: string | undefined;
  insecure: boolean;
  viaProxy: boolean;
  alpn: string[] | undefined;
  log: Logger | undefined;
}

/** TLS on an open socket; the certificate is checked here, before a byte of SSH is sent. */
export function startTls(raw: net.Socket, c: TlsContext, timeoutMs: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      socket: raw,
      host: c.host,
      servername: net.isIP(c.host) ? undefined : c.host,
      ca: c.ca,
      // Checked below, so the refusal can say why; nothing is sent before that check.
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      ALPNProtocols: c.alpn,
    });
    const timer = setTimeout(() => {
      s.destroy();
      raw.destroy();
      reject(fail('GATEWAY_TLS_FAILED', `${c.gateway}: no TLS handshake within ${timeoutMs} ms`, 504));
    }, timeoutMs);
    s.once('error', (e: Error) => {
      clearTimeout(timer);
      raw.destroy();
      reject(handshakeProblem(e, c.gateway));
    });
    s.once('secureConnect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      s.on('error', () => {});
      if (!s.authorized) {
        const code = String(s.authorizationError ?? 'UNKNOWN');
        const problem = certificateProblem(code, s.getPeerCertificate(), {
          gateway: c.gateway,
          host: c.host,
          ca: c.caFile,
          viaProxy: c.viaProxy,
        });
        if (!c.insecure) {
          s.destroy();
          reject(problem);
          return;
        }
        c.log?.warn(
          { event: 'connector.tls_unverified', gateway: c.gateway, problem: problem.code },
          `INSECURE: using the gateway's TLS connection although its certificate would be refused ` +
            `(insecure_skip_verify: true): ${problem.message}`,
        );
      }
      resolve(s);
    });
  });
}
