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
  _packetRW: {
    write: {
      allocStartKEX: number;
      alloc(n: number, force?: boolean): Buffer;
      finalize(p: Buffer, force?: boolean): Buffer;
    };
  };
}

/** RFC 4253 §11.1 reason codes the proxy uses. */
export const DISCONNECT = {
  HOST_NOT_ALLOWED_TO_CONNECT: 1,
  BY_APPLICATION: 11,
  CONNECTION_LOST: 10,
  NO_MORE_AUTH_METHODS_AVAILABLE: 14,
  ILLEGAL_USER_NAME: 15,
} as const;

const SSH_MSG_DISCONNECT = 1;

/**
 * Ends an SSH connection with SSH_MSG_DISCONNECT carrying `description`. OpenSSH prints it on
 * stderr at the default log level ("Received disconnect from … port …:15: <description>"), so this
 * is how the proxy tells `ssh`, `scp` and `sftp` users why they were refused: SSH has no error
 * text for a failed password. ssh2's own `disconnect()` sends an empty description and has no
 * public API for one; without its internals this degrades to a plain disconnect.
 */
export function disconnectWithReason(client: Connection, code: number, description: string): void {
  const proto = (client as unknown as { _protocol?: ProtocolInternals })._protocol;
  if (proto && sendPacket) {
    try {
      const msg = Buffer.from(description.replace(/[^\x20-\x7e]/g, '?').slice(0, 400), 'utf8');
      const len = 1 + 4 + 4 + msg.length + 4;
      const p = proto._packetRW.write.allocStartKEX;
      const packet = proto._packetRW.write.alloc(len, true);
      packet[p] = SSH_MSG_DISCONNECT;
      packet.writeUInt32BE(code, p + 1);
      packet.writeUInt32BE(msg.length, p + 5);
      msg.copy(packet, p + 9);
      packet.writeUInt32BE(0, p + 9 + msg.length); // language tag
      sendPacket(proto, proto._packetRW.write.finalize(packet, true), true);
    } catch {
      // fall through to the plain disconnect
    }
  }
  client.end();
}
