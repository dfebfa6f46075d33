import { randomFillSync } from 'node:crypto';

/**
 * ssh2 fills every outgoing packet's padding (4–19 bytes) with its own `randomFillSync` call,
 * which the bulk-transfer profile shows among the top costs of the sending side. This takes the
 * padding from a pool of random bytes instead (refilled with one `randomFillSync` per 64 KiB,
 * each byte used once), for ssh2's AES-GCM cipher classes only.
 *
 * ssh2 has no option for it, so this replaces `allocPacket` on the cipher's class, found on the
 * first live connection (`_protocol._cipher`). Before replacing anything it checks that the
 * original and the pooled version build byte-identical headers and lengths for a range of
 * sizes; if ssh2's internals differ from what this expects, nothing is changed (the fallback is
 * ssh2's own code).
 */

const POOL_SIZE = 64 * 1024;
let pool = Buffer.allocUnsafe(0);
let poolPos = 0;

function fillPadding(packet: Buffer, offset: number, length: number): void {
  if (poolPos + length > pool.length) {
    if (pool.length === 0) pool = Buffer.allocUnsafe(POOL_SIZE);
    randomFillSync(pool);
    poolPos = 0;
  }
  pool.copy(packet, offset, poolPos, poolPos + length);
  poolPos += length;
}

/** The AES-GCM packet layout (RFC 5647): length, padding length, payload, padding, 16-byte tag. */
function allocPacketGcm(payloadLen: number): Buffer {
  let pktLen = 4 + 1 + payloadLen;
  let padLen = 16 - ((pktLen - 4) & 15);
  if (padLen < 4) padLen += 16;
  pktLen += padLen;
  const packet = Buffer.allocUnsafe(pktLen + 16);
  packet.writeUInt32BE(pktLen - 4, 0);
  packet[4] = padLen;
  fillPadding(packet, 5 + payloadLen, padLen);
  return packet;
}

const GCM_CLASSES = new Set(['AESGCMCipherBinding', 'AESGCMCipherNative']);
type CipherProto = { allocPacket(n: number): Buffer; encrypt?: unknown };
const patched = new WeakSet<object>();
const refused = new WeakSet<object>();

/** True when `candidate` builds the same packet shape as `original` (checked on a spare instance's method). */
function sameLayout(original: (n: number) => Buffer, self: unknown): boolean {
  for (let n = 0; n <= 70; n++) {
    for (const size of [n, 32_768 + 9 + n]) {
      const a = original.call(self, size);
      const b = allocPacketGcm(size);
      if (a.length !== b.length || a.readUInt32BE(0) !== b.readUInt32BE(0) || a[4] !== b[4]) return false;
    }
  }
  return true;
}

/** Switches the connection's cipher class to pooled padding (once per class). Never throws. */
export function usePooledPadding(connection: unknown): void {
  try {
    const cipher = (connection as { _protocol?: { _cipher?: object } })._protocol?._cipher;
    if (!cipher) return;
    const proto = Object.getPrototypeOf(cipher) as CipherProto & { constructor: { name: string } };
    if (patched.has(proto) || refused.has(proto)) return;
    if (!GCM_CLASSES.has(proto.constructor.name) || typeof proto.allocPacket !== 'function') {
      refused.add(proto);
      return;
    }
    if (!sameLayout(proto.allocPacket, cipher)) {
      refused.add(proto);
      return;
    }
    proto.allocPacket = allocPacketGcm;
    patched.add(proto);
  } catch {
    // ssh2's internals are not what this expects: keep its own padding.
  }
}
