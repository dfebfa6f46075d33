/**
 * Reading a destination socket straight into SSH packets. A socket's reads normally land in a
 * buffer node allocates, and ssh2 copies each chunk into a new packet before it encrypts it: one
 * copy of every byte the connector (or a peer) sends into the tunnel. Dialled with `onread`, the
 * socket reads into buffers laid out as a CHANNEL_DATA packet (PACKET_HEADROOM bytes free before
 * the data, PACKET_TAILROOM after it, the ArrayBuffer marked with PACKET_ROOM), and the ssh2
 * patch builds the packet around the data and encrypts it where it is (Channel.js `sendInPlace`).
 *
 * A short read is copied (cheap); only a large read gives its buffer away, so a mostly idle
 * connection does not keep a 128 KiB buffer per small packet queued, and a connection whose reads
 * are all short (most requests and answers) reads into one buffer shared by every such socket.
 * Where ssh2 cannot send a read in place (a key exchange, a window that splits it, another
 * cipher), it copies it as it copies any other chunk.
 *
 * A room whose packet ssh2 sent in place goes back to a small pool once the socket's write
 * callback says the kernel has it (`pooledPacketRoom`), and the next large read lands in memory
 * that is still in the cache.
 */
import type { Socket } from 'node:net';
import { fromScratch, moveToOnread, type OnreadReader, SCRATCH_SIZE, scratchBuffer } from './region-read.js';

/** Packet length, padding length, message type, channel, data length. */
export const PACKET_HEADROOM = 4 + 1 + 1 + 4 + 4;
/** The most padding (4 + a 16-byte block - 1) and the 16-byte tag. */
export const PACKET_TAILROOM = 19 + 16;
/** One read: the largest packet Tether's channels advertise (the ssh2 patch's PACKET_SIZE). */
export const PACKET_READ_SIZE = 128 * 1024;
/** Reads at least this large keep their buffer (and may go out in place); smaller ones are copied. */
export const IN_PLACE_MIN = 32 * 1024;
/** The mark the ssh2 patch looks for on an ArrayBuffer laid out as a packet (Channel.js). */
export const PACKET_ROOM: unique symbol = Symbol.for('tether.packetRoom') as never;
/**
 * On a pooled room's ArrayBuffer: what the ssh2 patch (crypto.js `sealChannelData`) hands to the
 * socket's `write()` as its callback when it sent the room's packet in place.
 */
export const PACKET_ROOM_SENT: unique symbol = Symbol.for('tether.packetRoomSent') as never;
/**
 * Rooms kept for reuse (PACKET_READ_SIZE each): 2 MiB per process at most. A room written to
 * again while it is still in the cache is cheaper than a fresh one (memory freed only at the next
 * scavenge is cold by then): reading a loopback socket costs 0.37-0.41 s of CPU per GB into
 * reused buffers against 0.45-0.48 s into fresh ones (docs/performance.md).
 */
export const ROOM_POOL_MAX = 16;

type RoomBuffer = ArrayBuffer & { [PACKET_ROOM]?: boolean; [PACKET_ROOM_SENT]?: (err?: unknown) => void };

/** Whole rooms (headroom, data, tailroom) whose last packet has left its socket. */
const roomPool: Buffer[] = [];

/** Rooms in the pool now (for tests). */
export function pooledRooms(): number {
  return roomPool.length;
}

/**
 * A buffer laid out as a packet around `n` bytes of data, marked for the ssh2 patch: the data
 * is the view returned, at PACKET_HEADROOM of a buffer PACKET_TAILROOM longer than it.
 */
export function packetRoom(n: number): Buffer {
  return wholeRoom(n).subarray(PACKET_HEADROOM, PACKET_HEADROOM + n);
}

/** A whole room around `n` bytes of data (headroom, data, tailroom), marked for the ssh2 patch. */
function wholeRoom(n: number): Buffer {
  const b = Buffer.allocUnsafeSlow(PACKET_HEADROOM + n + PACKET_TAILROOM);
  (b.buffer as RoomBuffer)[PACKET_ROOM] = true;
  return b;
}

/**
 * A room of PACKET_READ_SIZE for a reader: from the pool when one is there. The room goes back to
 * the pool only through the ssh2 patch, when its packet was sent in place and the socket's write
 * callback came without an error, i.e. once the kernel has the bytes and nothing in the process
 * will read or write them again. A room whose data went any other way (copied by ssh2, written to
 * a plain socket, dropped with its stream) is never called back and is left to the garbage
 * collector, as before.
 */
export function pooledPacketRoom(): Buffer {
  const room = roomPool.pop() ?? wholeRoom(PACKET_READ_SIZE);
  // one callback per use, good for one call: a room goes into the pool at most once per use, so
  // two readers never get the same room
  let armed = true;
  (room.buffer as RoomBuffer)[PACKET_ROOM_SENT] = (err) => {
    if (!armed) return;
    armed = false;
    if (!err && roomPool.length < ROOM_POOL_MAX) roomPool.push(room);
  };
  return room.subarray(PACKET_HEADROOM, PACKET_HEADROOM + PACKET_READ_SIZE);
}

/** Where a reader's data goes: `false` pauses the socket until it is resumed. */
type Deliver = (data: Buffer) => boolean;

/**
 * The `onread` side of one socket: where its next read lands, and its reads until a pump takes
 * them. A socket starts on the shared scratch buffer; a read that fills it moves the socket to a
 * packet room of its own (PACKET_READ_SIZE), and a short read there moves it back.
 */
export class PacketReader implements OnreadReader {
  /** The socket's own packet room, while its reads are large. */
  private room: Buffer | undefined;
  private large = false;
  private deliver: Deliver | undefined;
  /** Reads that arrived before a pump was attached (the socket is paused meanwhile). */
  private early: Buffer[] = [];

  /** For `net.connect({ onread })`. */
  readonly onread = {
    buffer: (): Buffer => {
      if (this.large) {
        this.room ??= pooledPacketRoom();
        return this.room;
      }
      return scratchBuffer();
    },
    callback: (n: number): boolean => {
      const data = this.take(n);
      if (this.deliver) return this.deliver(data);
      this.early.push(data);
      return false;
    },
  };

  /**
   * The `n` bytes just read: a large read as a view of its room, which it keeps (the next read
   * gets a new one); any other read as a copy.
   */
  private take(n: number): Buffer {
    if (!this.large) {
      const data = fromScratch(n);
      if (n === SCRATCH_SIZE) this.large = true;
      return data;
    }
    const data = (this.room as Buffer).subarray(0, n);
    if (n >= IN_PLACE_MIN) {
      this.room = undefined;
      return data;
    }
    if (n < SCRATCH_SIZE) {
      this.large = false;
      this.room = undefined;
    }
    return Buffer.from(data);
  }

  /** Ties this reader to the socket opened with its `onread` (packetReaderOf finds it). */
  bind(socket: Socket): void {
    readers.set(socket, this);
  }

  /** What the socket had read before it was moved to this reader (moveToOnread): delivered first. */
  prepend(data: Buffer): void {
    if (this.deliver) throw new Error('prepend after a pump was attached');
    this.early.unshift(data);
  }

  /** Reads kept until a pump is attached. */
  get waiting(): number {
    return this.early.length;
  }

  /** Attaches the pump; returns the reads that came before it, in order. */
  attach(deliver: Deliver): Buffer[] {
    this.deliver = deliver;
    const early = this.early;
    this.early = [];
    return early;
  }
}

const readers = new WeakMap<Socket, PacketReader>();

export function packetReaderOf(s: unknown): PacketReader | undefined {
  return readers.get(s as Socket);
}

/**
 * Returns a socket that reads `accepted`'s connection (a caller on a lease port) into packet rooms,
 * to be used instead of it from now on (region-read.ts `moveToOnread`); `accepted` itself when
 * that cannot be done, which is always correct, only slower. Its reads wait for a pump. What the
 * caller sent before (most protocols speak first: an HTTP request, iperf3's cookie) was read by
 * node already; it comes first.
 */
export function readIntoPackets(accepted: Socket): Socket {
  return moveToOnread(accepted, new PacketReader());
}
