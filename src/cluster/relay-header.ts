import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import net from 'node:net';
import { isErrorCode, isTetherError, TetherError } from '../errors/index.js';

/**
 * The caller's address on a relayed connection. A member that does not serve a forward relays
 * its callers to the owner's lease port; the first line it sends there names the caller:
 *
 *   TETHER-RELAY 2 <address> <port> <lease port> <unix ms> <hmac>\n
 *
 * Version 2 asks the owner to acknowledge: once its connector accepted the channel, the owner
 * sends `TETHER-RELAY OK\n` before any byte of the service. An owner that refuses (the forward
 * moved away from it a moment ago, as in a drain) closes without it, and the relaying member
 * tries again elsewhere while it still holds every byte of the caller. Version 1 (no
 * acknowledgement) is still read, from members of the previous release.
 *
 * The HMAC (SHA-256, hex) covers everything before it and is keyed with the cluster's relay key
 * (kept in the shared store, like the host key), so only a member can name a caller; the owner
 * reads the line only from a member's address and passes the address on to its broker and to
 * the connector's `forwarded-tcpip` originator fields.
 */
/** What every version's header starts with (the version digit follows). */
const RELAY_PREFIX = 'TETHER-RELAY ';
/** The owner's acknowledgement of a version-2 header: the channel is open, bytes may flow. */
export const RELAY_ACCEPTED = Buffer.from('TETHER-RELAY OK\n', 'latin1');
/**
 * The owner's refusal of a version-2 relayed connection that is the caller's answer, not a
 * reason to try elsewhere (a connection cap, a traffic quota, an allowlist: a 4xx):
 * `TETHER-RELAY NO <status> <code> <message>\n`, then it closes. A relaying member of an earlier
 * release reads it as any refusal (the owner answered without accepting).
 */
const RELAY_REFUSED = Buffer.from('TETHER-RELAY NO ', 'latin1');
/** Longest message a refusal line carries (printable ASCII). */
const MAX_REFUSAL_MESSAGE = 300;
const REFUSAL_LINE = new RegExp(
  `^TETHER-RELAY NO (4\\d\\d) ([A-Z][A-Z0-9_]{0,63}) ([\\x20-\\x7e]{1,${MAX_REFUSAL_MESSAGE}})$`,
);
/** Longest header line accepted (an IPv6 address, ports, a time, 64 hex digits: well below). */
export const MAX_RELAY_HEADER = 256;
/** Longest refusal line read: the prefix, a status, a code and the message. */
const MAX_REFUSAL_LINE = MAX_REFUSAL_MESSAGE + 100;
/** How far a header's time may be from the owner's clock. */
const MAX_SKEW_MS = 60_000;

export interface RelayOrigin {
  address: string;
  port: number;
  /** The relaying member waits for RELAY_ACCEPTED (a version-2 header). */
  acknowledge?: boolean;
  /** The lease port the header names (as read; relayHeader takes it separately). */
  leasePort?: number;
}

/** The refusal line for `err`, when it is the caller's answer (a 4xx TetherError); else undefined. */
export function relayRefusal(err: unknown): Buffer | undefined {
  if (!isTetherError(err) || err.status < 400 || err.status > 499) return undefined;
  const message = err.message.replace(/[^\x20-\x7e]/g, ' ').slice(0, MAX_REFUSAL_MESSAGE);
  return Buffer.from(`${RELAY_REFUSED.toString('latin1')}${err.status} ${err.code} ${message}\n`, 'latin1');
}

/** The error a refusal line carries; undefined for a line that is not one (any refusal, then). */
export function parseRelayRefusal(line: string): TetherError | undefined {
  const m = REFUSAL_LINE.exec(line);
  if (!m || !isErrorCode(m[2])) return undefined;
  return new TetherError(m[2], m[3]!, { status: Number(m[1]) });
}

function mac(key: string, body: string): string {
  return createHmac('sha256', key).update(body).digest('hex');
}

/** The newest header version this member writes and reads. */
export const RELAY_VERSION = 2;

/**
 * The header line a relaying member sends first: version 2 (the owner answers), or version 1 for
 * an owner of an earlier release (it reads only that, and does not answer).
 */
export function relayHeader(
  key: string,
  origin: RelayOrigin,
  leasePort: number,
  now: number,
  version: 1 | 2 = RELAY_VERSION,
): string {
  const body = `${RELAY_PREFIX}${version} ${origin.address} ${origin.port} ${leasePort} ${now}`;
  return `${body} ${mac(key, body)}\n`;
}

/**
 * Checks a header line (without its newline); the origin, or why it is refused. `leasePort`
 * undefined: any lease port is taken (a worker's relay port serves all of them).
 */
export function parseRelayHeader(
  key: string,
  line: string,
  leasePort: number | undefined,
  now: number,
): { ok: true; origin: RelayOrigin } | { ok: false; reason: string } {
  const version = line.startsWith(RELAY_PREFIX)
    ? line.slice(RELAY_PREFIX.length, RELAY_PREFIX.length + 2)
    : '';
  if (version !== '1 ' && version !== '2 ') return { ok: false, reason: 'not a relay header' };
  const parts = line.slice(RELAY_PREFIX.length + 2).split(' ');
  if (parts.length !== 5) return { ok: false, reason: 'malformed relay header' };
  const [address, portText, leaseText, timeText, sig] = parts as [string, string, string, string, string];
  const body = line.slice(0, line.length - sig.length - 1);
  const want = Buffer.from(mac(key, body), 'hex');
  const got = Buffer.from(/^[0-9a-f]{64}$/.test(sig) ? sig : '', 'hex');
  if (got.length !== want.length || !timingSafeEqual(got, want))
    return { ok: false, reason: 'relay header with a wrong signature' };
  const port = Number(portText);
  if (net.isIP(address) === 0 || !Number.isInteger(port) || port < 0 || port > 65535)
    return { ok: false, reason: 'malformed relay header' };
  const named = Number(leaseText);
  if (leasePort === undefined ? !Number.isInteger(named) || named < 1 || named > 65535 : named !== leasePort)
    return { ok: false, reason: 'relay header for another lease port' };
  if (Math.abs(now - Number(timeText)) > MAX_SKEW_MS)
    return { ok: false, reason: 'stale relay header (clocks more than 60 s apart?)' };
  return {
    ok: true,
    origin:
      version === '2 '
        ? { address, port, acknowledge: true, leasePort: named }
        : { address, port, leasePort: named },
  };
}

/**
 * Reads a relay header off a paused socket that came from a member's address. Resolves the
 * origin it names; `undefined` when the connection does not start with one (a direct caller
 * that happens to share a member's address: its bytes are put back); rejects with the reason a
 * header is refused. Gives up after `timeoutMs` without a byte (then it is a direct caller too).
 */
export function readRelayHeader(
  socket: Socket,
  key: string,
  leasePort: number | undefined,
  now: () => number,
  timeoutMs: number,
): Promise<RelayOrigin | undefined> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const finish = (fn: () => void) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.pause();
      fn();
    };
    const onClose = () => finish(() => reject(new Error('closed before a relay header')));
    const onData = (c: Buffer) => {
      buf = buf.length === 0 ? c : Buffer.concat([buf, c]);
      const magic = Buffer.from(RELAY_PREFIX);
      const n = Math.min(buf.length, magic.length);
      if (!buf.subarray(0, n).equals(magic.subarray(0, n))) {
        finish(() => {
          socket.unshift(buf);
          resolve(undefined);
        });
        return;
      }
      const nl = buf.indexOf(0x0a);
      if (nl < 0) {
        if (buf.length > MAX_RELAY_HEADER) finish(() => reject(new Error('relay header too long')));
        return;
      }
      const line = buf.subarray(0, nl).toString('latin1');
      const rest = buf.subarray(nl + 1);
      const r = parseRelayHeader(key, line, leasePort, now());
      finish(() => {
        if (!r.ok) return reject(new Error(r.reason));
        if (rest.length > 0) socket.unshift(rest);
        resolve(r.origin);
      });
    };
    const timer = setTimeout(() => finish(() => resolve(undefined)), timeoutMs);
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.resume();
  });
}

/**
 * The relaying member's side of a version-2 header: resolves once the owner sent
 * RELAY_ACCEPTED (bytes after it are put back for the caller); rejects when the owner closes
 * or answers anything else first (it refused: the caller's bytes were not sent), with the
 * owner's TetherError when it sent the caller's answer (RELAY_REFUSED), or after `timeoutMs`.
 * It reads with `read()`, never pausing the socket: whoever takes the stream next starts it by
 * listening (an HTTP client's parser does not resume a stream paused before it).
 */
export function relayAccepted(socket: Socket, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    let done = false;
    const finish = (err?: Error, rest?: Buffer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('close', onClose);
      socket.off('error', onError);
      if (err) {
        socket.destroy();
        reject(err);
        return;
      }
      if (rest && rest.length > 0) socket.unshift(rest);
      resolve();
    };
    const onClose = () => finish(new Error('the owner refused the relayed connection (closed it)'));
    const onError = (e: Error) => finish(e);
    const onReadable = () => {
      // what follows the acknowledgement is put back (finish), for whoever reads the stream next
      for (let c = socket.read() as Buffer | null; c !== null; c = socket.read() as Buffer | null)
        if (!take(c)) return;
    };
    const starts = (m: Buffer) => {
      const n = Math.min(buf.length, m.length);
      return buf.subarray(0, n).equals(m.subarray(0, n));
    };
    const unaccepted = () => new Error('the owner answered a relayed connection without accepting it');
    /** Adds bytes; false once the answer is decided (accepted or refused). */
    const take = (c: Buffer): boolean => {
      buf = buf.length === 0 ? c : Buffer.concat([buf, c]);
      if (starts(RELAY_ACCEPTED)) {
        if (buf.length < RELAY_ACCEPTED.length) return true;
        finish(undefined, buf.subarray(RELAY_ACCEPTED.length));
        return false;
      }
      if (starts(RELAY_REFUSED)) {
        const nl = buf.indexOf(0x0a);
        if (nl < 0 && buf.length <= MAX_REFUSAL_LINE) return true;
        finish(
          (nl < 0 ? undefined : parseRelayRefusal(buf.subarray(0, nl).toString('latin1'))) ?? unaccepted(),
        );
        return false;
      }
      finish(unaccepted());
      return false;
    };
    const timer = setTimeout(
      () => finish(new Error(`the owner did not accept the relayed connection within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.on('readable', onReadable);
    socket.once('close', onClose);
    socket.once('error', onError);
  });
}

/** How long a relaying member or worker waits for the TCP connection to the owner. */
const RELAY_CONNECT_MS = 5_000;

/**
 * The relaying side: connects to the owner (`to`), sends the header first and, when `acceptMs`
 * is given (a version-2 header), resolves once the owner accepted (`relayAccepted`); without it,
 * once connected. Rejects when the connection fails or takes longer than RELAY_CONNECT_MS.
 */
export function dialRelay(
  to: { host: string; port: number; localAddress?: string },
  header: string,
  acceptMs: number | undefined,
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ ...to, noDelay: true });
    s.write(header);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`connect to ${to.host}:${to.port} timed out`));
    }, RELAY_CONNECT_MS);
    s.once('connect', () => {
      clearTimeout(timer);
      if (acceptMs === undefined) resolve(s);
      else relayAccepted(s, acceptMs).then(() => resolve(s), reject);
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
