import { createRequire } from 'node:module';
import type { Connection } from 'ssh2';

const require = createRequire(import.meta.url);

type SendPacket = (proto: unknown, packet: Buffer, bypass?: boolean) => void;
let sendPacket: SendPacket | undefined;
try {
  sendPacket = (require('ssh2/lib/protocol/utils.js') as { sendPacket: SendPacket }).sendPacket;
} catch {
  sendPacket = undefined;
}

interface ProtocolInternals {
  _packetRW: { write: { allocStart: number; alloc(n: number): Buffer; finalize(p: Buffer): Buffer } };
}

const SSH_MSG_DEBUG = 4;

/**
 * Sends SSH_MSG_DEBUG (RFC 4253 §11.3) so a plain OpenSSH client shows the reason with `ssh -v`
 * ("debug1: Remote: …"). ssh2 has no public API for it; without the internals this is a no-op.
 */
export function sendSshDebug(client: Connection, message: string): void {
  const proto = (client as unknown as { _protocol?: ProtocolInternals })._protocol;
  if (!proto || !sendPacket) return;
  try {
    const msg = Buffer.from(message.slice(0, 500), 'utf8');
    const len = 1 + 1 + 4 + msg.length + 4;
    const p = proto._packetRW.write.allocStart;
    const packet = proto._packetRW.write.alloc(len);
    packet[p] = SSH_MSG_DEBUG;
    packet[p + 1] = 1; // always_display
    packet.writeUInt32BE(msg.length, p + 2);
    msg.copy(packet, p + 6);
    packet.writeUInt32BE(0, p + 6 + msg.length); // language tag
    sendPacket(proto, proto._packetRW.write.finalize(packet));
  } catch {
    // best effort only
  }
}
