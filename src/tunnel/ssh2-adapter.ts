/**
 * The one module that reaches into ssh2's private fields (`_sock`, `_protocol` and its packet
 * writer) for what ssh2 has no public API for: the socket under a connection (to close a peer
 * that is gone, to read byte counters), SSH_MSG_DEBUG and SSH_MSG_DISCONNECT with a reason.
 * Everything else in src/ goes through here; the patch set (patches/) and the window policy it
 * calls (tunnel/windows.ts) are the other part of ssh2's internals the project touches. Each helper degrades to a no-op
 * when the internals are not there.
 */
import { createRequire } from 'node:module';
import type { Duplex } from 'node:stream';
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
      allocStart: number;
      allocStartKEX: number;
      alloc(n: number, force?: boolean): Buffer;
      finalize(p: Buffer, force?: boolean): Buffer;
    };
  };
}

/** The stream an ssh2 connection runs on (a TCP socket, a TLS socket or a WebSocket stream). */
export type SshSocket = Duplex & { bytesRead?: number; bytesWritten?: number };

export function socketOf(client: Connection): SshSocket | undefined {
  return (client as unknown as { _sock?: SshSocket })._sock;
}

function protocolOf(client: Connection): ProtocolInternals | undefined {
  return (client as unknown as { _protocol?: ProtocolInternals })._protocol;
}

const SSH_MSG_DEBUG = 4;

/**
 * Sends SSH_MSG_DEBUG (RFC 4253 §11.3) so a plain OpenSSH client shows the reason with `ssh -v`
 * ("debug1: Remote: …"). ssh2 has no public API for it; without the internals this is a no-op.
 */
export function sendSshDebug(client: Connection, message: string): void {
  const proto = protocolOf(client);
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

const SSH_MSG_DISCONNECT = 1;

/**
 * Ends an SSH connection with SSH_MSG_DISCONNECT carrying `description`. OpenSSH prints it on
 * stderr at the default log level ("Received disconnect from … port …:15: <description>"), so this
 * is how the proxy tells `ssh`, `scp` and `sftp` users why they were refused: SSH has no error
 * text for a failed password. ssh2's own `disconnect()` sends an empty description and has no
 * public API for one; without its internals this degrades to a plain disconnect.
 */
export function disconnectWithReason(client: Connection, code: number, description: string): void {
  const proto = protocolOf(client);
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
