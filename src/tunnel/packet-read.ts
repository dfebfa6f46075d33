/**
 * Reading a destination socket straight into SSH packets. A socket's reads normally land in a
 * buffer node allocates, and ssh2 copies each chunk into a new packet before it encrypts it: one
 * copy of every byte the connector (or a peer) sends into the tunnel. Dialled with `onread`, the
 * socket reads into buffers laid out as a CHANNEL_DATA packet (PACKET_HEADROOM bytes free before
 * the data, PACKET_TAILROOM after it, the ArrayBuffer marked with PACKET_ROOM), and the ssh2
 * patch builds the packet around the data and encrypts it where it is (Channel.js `sendInPlace`).
 *
 * A short read is copied (cheap) and its buffer read into again; only a large read gives its
 * buffer away, so a mostly idle connection does not keep a 64 KiB buffer per small packet queued.
 * Where ssh2 cannot send a read in place (a key exchange, a window that splits it, another
 * cipher), it copies it as it copies any other chunk.
 */
import type { Socket } from 'node:net';
import type { Writable } from 'node:stream';

/** Packet length, padding length, message type, channel, data length. */
export const PACKET_HEADROOM = 4 + 1 + 1 + 4 + 4;
/** The most padding (4 + a 16-byte block - 1) and the 16-byte tag. */
export const PACKET_TAILROOM = 19 + 16;
/** One read: the largest packet Tether's channels advertise (the ssh2 patch's PACKET_SIZE). */
export const PACKET_READ_SIZE = 64 * 1024;
/** Reads at least this large keep their buffer (and may go out in place); smaller ones are copied. */
export const IN_PLACE_MIN = 32 * 1024;
/** The mark the ssh2 patch looks for on an ArrayBuffer laid out as a packet (Channel.js). */
export const PACKET_ROOM: unique symbol = Symbol.for('tether.packetRoom') as never;

/**
 * A buffer laid out as a packet around `n` bytes of data, marked for the ssh2 patch: the data
 * is the view returned, at PACKET_HEADROOM of a buffer PACKET_TAILROOM longer than it.
 */
export function packetRoom(n: number): Buffer {
  const b = Buffer.allocUnsafeSlow(PACKET_HEADROOM + n + PACKET_TAILROOM);
  (b.buffer as unknown as Record<symbol, boolean>)[PACKET_ROOM] = true;
  return b.subarray(PACKET_HEADROOM, PACKET_HEADROOM + n);
}

/** Where a reader's data goes: `false` pauses the socket until it is resumed. */
type Deliver = (data: Buffer) => boolean;

/** The `onread` side of one socket: its read buffers, and its reads until a pump takes them. */
export class PacketReader {
  /** The view the next read lands in (packetRoom). */
  private current: Buffer | undefined;
  private deliver: Deliver | undefined;
  /** Reads that arrived before a pump was attached (the socket is paused meanwhile). */
  private early: Buffer[] = [];

  /** For `net.connect({ onread })`. */
  readonly onread = {
    buffer: (): Buffer => {
      this.current ??= packetRoom(PACKET_READ_SIZE);
      return this.current;
    },
    callback: (n: number): boolean => {
      const data = this.take(n);
      if (this.deliver) return this.deliver(data);
      this.early.push(data);
      return false;
    },
  };

  /**
   * The `n` bytes just read: a large read as a view of its buffer, which it keeps (the next read
   * gets a new one); a short one as a copy, and the buffer is read into again.
   */
  private take(n: number): Buffer {
    const data = (this.current as Buffer).subarray(0, n);
    if (n < IN_PLACE_MIN) return Buffer.from(data);
    this.current = undefined;
    return data;
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

/** Options for `net.connect` that read into packets; `register` ties the reader to its socket. */
export function packetReadOptions(): { reader: PacketReader; register(s: Socket): void } {
  const reader = new PacketReader();
  return { reader, register: (s) => readers.set(s, reader) };
}

export function packetReaderOf(s: unknown): PacketReader | undefined {
  return readers.get(s as Socket);
}

const premature = () => Object.assign(new Error('premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });

/**
 * `pump()` (pipe.ts) for a socket read by a PacketReader: `cb()` once the socket ended and `dst`
 * finished, `cb(err)` on an error or a premature close of either; `count(n)` for every chunk.
 * The same backpressure as pump(): the socket pauses once `dst` holds more than `backlog`
 * unwritten bytes (RELAY_BACKLOG), and resumes on 'drain'.
 */
export function pumpPackets(
  src: Socket,
  reader: PacketReader,
  dst: Writable,
  o: { backlog: number; count: (n: number) => void },
  cb: (err?: Error) => void,
): void {
  const count = o.count;
  let finished = false;
  const done = (err?: Error) => {
    if (finished) return;
    finished = true;
    reader.attach(() => false);
    src.off('end', onEnd);
    dst.off('drain', onDrain);
    cb(err);
  };
  let waiting = false;
  const onDrain = () => {
    waiting = false;
    if (!finished) src.resume();
  };
  /** false: wait for 'drain' (the socket pauses). */
  const write = (chunk: Buffer): boolean => {
    if (dst.write(chunk) || dst.writableLength <= o.backlog) return true;
    if (!waiting) {
      waiting = true;
      dst.once('drain', onDrain);
    }
    return false;
  };
  const deliver: Deliver = (data) => {
    if (finished) return false;
    count(data.length);
    return write(data);
  };
  const onEnd = () => dst.end();
  src.on('error', done);
  dst.on('error', done);
  src.once('close', () => {
    if (!src.readableEnded) done(premature());
  });
  dst.once('close', () => {
    if (!dst.writableFinished) done(premature());
  });
  dst.once('finish', () => done());
  src.once('end', onEnd);
  let go = true;
  for (const data of reader.attach(deliver)) go = deliver(data) && go;
  if (go) src.resume();
}
