import net from 'node:net';
import { CidrSet, normalizeAddress } from '../config/cidr.js';
import type { Clock } from '../core/clock.js';
import type { RefusalLog } from '../core/refusals.js';
import type { Logger } from '../log/index.js';
import { type ProxyProtocol, proxyProtocol } from './proxy-protocol-lib.js';

/**
 * The PROXY protocol (v1 text and v2 binary, haproxy's proxy-protocol.txt) on a listener behind a
 * TCP load balancer: the balancer's first bytes name the caller, and that address becomes the
 * socket's `remoteAddress`/`remotePort`, so everything after (logs, audit, login throttle,
 * per-source caps, allowlists, session lists) sees the caller, not the balancer.
 *
 *  - `optional`: a header is read when a trusted proxy sends one; connections without one keep
 *    their own address. A header from any other address is refused.
 *  - `required`: only trusted proxies may connect, and each connection must start with a header.
 *
 * The header is read with a deadline and a size bound (a client that sends half a header is cut
 * when the time is up), and every refusal is logged and counted (`bound.refused`).
 */

export type ProxyProtocolMode = 'off' | 'optional' | 'required';

export interface ProxyProtocolSettings {
  mode: ProxyProtocolMode;
  /** CIDR blocks of the balancers allowed to send headers. */
  trustedProxies: readonly string[];
  /** How long a header may take to arrive, ms. */
  timeoutMs: number;
  /** Largest header accepted, bytes (a v2 header with TLVs can be long; v1 is at most 107). */
  maxBytes: number;
  /** Connections reading their header at once (beyond: refused). */
  maxPending: number;
}

const V1_SIG = Buffer.from('PROXY ', 'latin1');
const V2_SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** Longest v1 line, CRLF included (the spec's bound). */
const V1_MAX = 107;

export interface ProxyOrigin {
  address: string;
  port: number;
}

/** What the first bytes say: a complete header, not a header, or wait for more. */
export type HeaderParse =
  | { kind: 'more' }
  | { kind: 'none' }
  /** `origin` undefined: LOCAL command, UNKNOWN or unsupported family (use the socket's address). */
  | { kind: 'header'; length: number; version: 1 | 2; origin?: ProxyOrigin }
  | { kind: 'invalid'; reason: string };

const isPrefix = (buf: Buffer, sig: Buffer) =>
  buf.subarray(0, Math.min(buf.length, sig.length)).equals(sig.subarray(0, Math.min(buf.length, sig.length)));

function validPort(p: number): boolean {
  return Number.isInteger(p) && p >= 0 && p <= 65535;
}

function ipv6Text(bytes: readonly number[]): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  // let the URL parser compress it canonically ("2001:db8::1")
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

/** Parses the start of a connection (pure: used by the reader and by property tests). */
export function parseProxyHeader(buf: Buffer, maxBytes: number): HeaderParse {
  if (buf.length === 0) return { kind: 'more' };
  if (isPrefix(buf, V1_SIG)) {
    if (buf.length < V1_SIG.length) return { kind: 'more' };
    const end = buf.indexOf('\r\n', 0, 'latin1');
    if (end < 0) {
      return buf.length >= V1_MAX
        ? { kind: 'invalid', reason: 'v1 header longer than 107 bytes' }
        : { kind: 'more' };
    }
    const length = end + 2;
    if (length > V1_MAX) return { kind: 'invalid', reason: 'v1 header longer than 107 bytes' };
    const line = buf.subarray(0, length).toString('latin1');
    if (/^PROXY UNKNOWN[ \r]/.test(line)) return { kind: 'header', length, version: 1 };
    let p: ProxyProtocol.V1ProxyProtocol;
    try {
      p = proxyProtocol().V1ProxyProtocol.parse(line);
    } catch {
      return { kind: 'invalid', reason: 'malformed v1 header' };
    }
    const family = String(p.inetProtocol) === 'TCP6' ? 6 : 4;
    const src = p.source.ipAddress;
    if (net.isIP(src) !== family || net.isIP(p.destination.ipAddress) !== family) {
      return { kind: 'invalid', reason: `v1 header with an address that is not TCP${family}` };
    }
    if (!validPort(p.source.port) || !validPort(p.destination.port)) {
      return { kind: 'invalid', reason: 'v1 header with a port out of range' };
    }
    return {
      kind: 'header',
      length,
      version: 1,
      origin: { address: normalizeAddress(src), port: p.source.port },
    };
  }
  if (isPrefix(buf, V2_SIG)) {
    if (buf.length < 16) return { kind: 'more' };
    const length = 16 + buf.readUInt16BE(14);
    if (length > maxBytes) {
      return { kind: 'invalid', reason: `v2 header of ${length} bytes, over the ${maxBytes}-byte bound` };
    }
    if (buf.length < length) return { kind: 'more' };
    const { AddressFamilyType, Command, IPv4ProxyAddress, IPv6ProxyAddress, V2ProxyProtocol } =
      proxyProtocol();
    let p: ProxyProtocol.V2ProxyProtocol;
    try {
      p = V2ProxyProtocol.parse(new Uint8Array(buf.subarray(0, length)));
    } catch (e) {
      return { kind: 'invalid', reason: `malformed v2 header (${(e as Error).message})` };
    }
    if (p.command === Command.LOCAL) return { kind: 'header', length, version: 2 };
    const family = p.addressFamilyType;
    if (p.proxyAddress instanceof IPv4ProxyAddress && family === AddressFamilyType.INET) {
      const a = p.proxyAddress;
      return {
        kind: 'header',
        length,
        version: 2,
        origin: { address: a.sourceAddress.address.join('.'), port: a.sourcePort },
      };
    }
    if (p.proxyAddress instanceof IPv6ProxyAddress && family === AddressFamilyType.INET6) {
      const a = p.proxyAddress;
      return {
        kind: 'header',
        length,
        version: 2,
        origin: { address: normalizeAddress(ipv6Text(a.sourceAddress.address)), port: a.sourcePort },
      };
    }
    // AF_UNSPEC or AF_UNIX: the spec says to use the connection's own addresses
    return { kind: 'header', length, version: 2 };
  }
  return { kind: 'none' };
}

/** Makes `origin` the socket's remote address for everything that reads it later. */
export function adoptOrigin(socket: net.Socket, origin: ProxyOrigin): void {
  const family = net.isIP(origin.address) === 6 ? 'IPv6' : 'IPv4';
  Object.defineProperty(socket, 'remoteAddress', { value: origin.address, configurable: true });
  Object.defineProperty(socket, 'remotePort', { value: origin.port, configurable: true });
  Object.defineProperty(socket, 'remoteFamily', { value: family, configurable: true });
}

/** Why a connection was refused: the bound's name (the `reason` label) and the log text. */
interface Refusal {
  reason: string;
  message: string;
}

/**
 * The PROXY-protocol gate of one listener. `admit` reads the header (when the mode asks for one)
 * and calls `next` with the socket carrying the caller's address, or closes the socket.
 */
export class ProxyProtocolGate {
  private readonly trusted: CidrSet;
  private pending = 0;

  constructor(
    readonly listener: string,
    private readonly settings: ProxyProtocolSettings,
    private readonly deps: { log: Logger; clock: Clock; refusals: RefusalLog },
  ) {
    this.trusted = new CidrSet(settings.trustedProxies);
  }

  get enabled(): boolean {
    return this.settings.mode !== 'off';
  }

  /**
   * Wraps every 'connection' listener of `server` (an http/https/net server): each connection
   * reaches them only after the gate admitted it.
   */
  guard(server: net.Server): void {
    if (!this.enabled) return;
    const listeners = server.listeners('connection') as Array<(s: net.Socket) => void>;
    server.removeAllListeners('connection');
    server.on('connection', (s: net.Socket) =>
      this.admit(s, () => {
        for (const l of listeners) l.call(server, s);
      }),
    );
  }

  /** Reads the header, then calls `next` (with the caller's address adopted) or closes the socket. */
  admit(socket: net.Socket, next: () => void): void {
    if (!this.enabled) {
      next();
      return;
    }
    if (socket.remoteAddress === undefined) {
      // gone before we looked (a health check that closed at once): nothing to admit or refuse
      socket.on('error', () => {});
      socket.destroy();
      return;
    }
    const peer = normalizeAddress(socket.remoteAddress);
    const trusted = this.trusted.has(peer);
    if (this.settings.mode === 'required' && !trusted) {
      this.refuse(socket, peer, {
        reason: 'proxy_untrusted',
        message: `connection from ${peer}, which is not in trusted_proxies (proxy_protocol: required)`,
      });
      return;
    }
    if (this.pending >= this.settings.maxPending) {
      this.refuse(socket, peer, {
        reason: 'proxy_header_pending',
        message: `${this.settings.maxPending} connections are already sending their PROXY header`,
      });
      return;
    }
    this.pending++;
    const flowing = socket.readableFlowing;
    let buf: Buffer = Buffer.alloc(0);
    let done = false;
    const finish = (outcome: { refusal: Refusal } | { rest: Buffer; origin?: ProxyOrigin }) => {
      if (done) return;
      done = true;
      this.pending--;
      this.deps.clock.clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onClose);
      socket.pause();
      if ('refusal' in outcome) return this.refuse(socket, peer, outcome.refusal);
      if (outcome.rest.length > 0) socket.unshift(outcome.rest);
      if (outcome.origin) adoptOrigin(socket, outcome.origin);
      // back to how the listener handed it over (paused on connect, or not yet flowing)
      (socket as { readableFlowing: boolean | null }).readableFlowing = flowing;
      next();
    };
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const r = parseProxyHeader(buf, this.settings.maxBytes);
      if (r.kind === 'more') {
        if (buf.length > this.settings.maxBytes) {
          finish({
            refusal: {
              reason: 'proxy_header_invalid',
              message: `PROXY header over ${this.settings.maxBytes} bytes`,
            },
          });
        }
        return;
      }
      if (r.kind === 'none') {
        if (this.settings.mode === 'required') {
          return finish({
            refusal: {
              reason: 'proxy_header_missing',
              message: `no PROXY header from ${peer} (proxy_protocol: required)`,
            },
          });
        }
        return finish({ rest: buf });
      }
      if (!trusted) {
        return finish({
          refusal: {
            reason: 'proxy_untrusted',
            message: `PROXY header from ${peer}, which is not in trusted_proxies`,
          },
        });
      }
      if (r.kind === 'invalid') {
        return finish({ refusal: { reason: 'proxy_header_invalid', message: `${r.reason} from ${peer}` } });
      }
      finish({ rest: buf.subarray(r.length), ...(r.origin ? { origin: r.origin } : {}) });
    };
    const onClose = () => {
      if (done) return;
      done = true;
      this.pending--;
      this.deps.clock.clearTimeout(timer);
      socket.off('data', onData);
      socket.destroy();
    };
    const timer = this.deps.clock.setTimeout(() => {
      if (buf.length === 0 && this.settings.mode === 'optional') {
        // nothing sent at all: a client that waits for the server to speak first
        return finish({ rest: buf });
      }
      finish({
        refusal: {
          reason: 'proxy_header_timeout',
          message: `no complete PROXY header from ${peer} within ${this.settings.timeoutMs} ms`,
        },
      });
    }, this.settings.timeoutMs);
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.once('error', onClose);
    socket.resume();
  }

  private refuse(socket: net.Socket, peer: string, r: Refusal): void {
    this.deps.refusals.refuse(
      r.reason,
      // one burst per address and kind of fault (the messages name no per-connection detail)
      `${peer}\0${r.message}`,
      { source: peer, listener: this.listener },
      `${this.listener}: connection refused: ${r.message}`,
    );
    socket.on('error', () => {});
    socket.destroy();
  }
}
