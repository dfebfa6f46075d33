/**
 * Reading an accepted SSH connection into large regions. Node reads each chunk of a socket into a
 * buffer of its own (64 KiB at most), so an SSH packet of 64 KiB or more (Tether's channels send
 * up to 128 KiB) nearly always spans two reads, and ssh2 copied every such packet into a new buffer before it
 * decrypted it: a tenth of the gateway's time in a download. Read with `onread`, the socket's
 * reads follow each other in one large region, and the ssh2 patch (crypto.js `joinPacket`) takes a
 * packet that spans two adjacent reads as one view and decrypts it where it lies; only a packet
 * that crosses into the next region is copied.
 *
 * Node has no `onread` for the sockets a `net.Server` accepts: `readIntoRegions` moves the accepted
 * socket's handle into a new `net.Socket` made with `onread` (see its comment). A socket starts on
 * a small buffer that every socket reading short pieces shares (copied out, as node's own reads
 * are) and moves to regions of its own only once a read fills it, so an idle or interactive session
 * keeps no region; a short read moves it back.
 */
import net from 'node:net';

/**
 * One region: about eight 128 KiB packets, so about one packet in eight is copied. Just under
 * 1 MiB, the mmap threshold the binary sets (src/bin/node-flags.ts): glibc serves it from its heap
 * and keeps it there when freed, where a mapped region would fault in every page of each new one.
 */
export const REGION_SIZE = 1024 * 1024 - 64;
/** A read gets at least this much room (one largest packet and more); less left starts a region. */
export const MIN_READ = 160 * 1024;
/**
 * What a socket reads while its reads are short, for both kinds of reader (this one and
 * packet-read.ts): shared by every such socket, as what it reads is copied out in the read's own
 * callback (one read at a time on the event loop). A new connection allocates nothing for its
 * reads until one fills this buffer.
 */
export const SCRATCH_SIZE = 16 * 1024;
let scratch: Buffer | undefined;

/** The shared buffer short reads land in. */
export function scratchBuffer(): Buffer {
  scratch ??= Buffer.allocUnsafeSlow(SCRATCH_SIZE);
  return scratch;
}

/** A copy of the `n` bytes just read into the shared buffer. */
export function fromScratch(n: number): Buffer {
  return Buffer.from((scratch as Buffer).subarray(0, n));
}

/** What moveToOnread needs of a reader: its `onread` option, and the socket made with it. */
export interface OnreadReader {
  readonly onread: { buffer: () => Uint8Array; callback: (n: number, buf: Uint8Array) => boolean };
  bind(socket: net.Socket): void;
  /**
   * For a reader that delivers its reads itself (not through the socket's `push`): takes what the
   * accepted socket had read before the move, to deliver it before its own reads.
   */
  prepend?(data: Buffer): void;
}

/** The `onread` side of one socket. */
export class RegionReader implements OnreadReader {
  private region: Buffer | undefined;
  private used = 0;
  private large = false;
  /** Where reads go: the socket's own `push` (see bind). */
  private push: (data: Buffer) => boolean = () => false;

  /** Delivers the reads to the socket made with this reader's `onread`, as node's own reads are. */
  bind(socket: net.Socket): void {
    this.push = (data) => socket.push(data);
  }

  readonly onread = {
    buffer: (): Buffer => {
      if (!this.large) return scratchBuffer();
      if (this.region === undefined || this.region.length - this.used < MIN_READ) {
        this.region = Buffer.allocUnsafeSlow(REGION_SIZE);
        this.used = 0;
      }
      return this.region.subarray(this.used);
    },
    callback: (n: number): boolean => this.push(this.take(n)),
  };

  /** The `n` bytes just read: in a region, a view of it (the next read follows); else a copy. */
  private take(n: number): Buffer {
    if (!this.large) {
      if (n === SCRATCH_SIZE) this.large = true;
      return fromScratch(n);
    }
    const region = this.region as Buffer;
    const data = region.subarray(this.used, this.used + n);
    this.used += n;
    if (n < SCRATCH_SIZE) {
      // back to short pieces: the region stays alive only as long as what was read into it
      this.large = false;
      this.region = undefined;
    }
    return data;
  }
}

type WithHandle = net.Socket & { _handle: { useUserBuffer?: unknown; writeQueueSize?: number } | null };

const REMOTE = ['remoteAddress', 'remotePort', 'remoteFamily'] as const;

/**
 * Returns a socket that reads `accepted`'s connection into regions, to be used instead of it from
 * now on; `accepted` itself when that cannot be done (see moveToOnread), which is always correct,
 * only slower.
 */
export function readIntoRegions(accepted: net.Socket): net.Socket {
  return moveToOnread(accepted, new RegionReader());
}

/**
 * Node has no `onread` for the sockets a listener accepts; this gives one: a new socket made with
 * node's own `new net.Socket({ handle, onread })` (as a dialled socket gets it) takes over
 * `accepted`'s handle, is bound to `reader`, and is to be used instead of it from now on. Returns `accepted` itself when
 * that cannot be done: not a plain TCP socket (or one without the fields of node's own sockets
 * this relies on), already ending or flowing, someone listening to its reads, or a write still
 * queued.
 *
 * `accepted` must be paused (a listener with `pauseOnConnect`, or after a first-bytes sniff). What
 * it had read and not delivered comes first: handed to the reader's `prepend`
 * when it has one, else put back in front of the new socket's reads; an address a PROXY header gave it is carried
 * over, and the two close together: the listener counts `accepted` (its `connections`, and
 * `close()` waits for it), so it closes when the new socket does, and whoever holds `accepted`
 * still closes the connection by destroying it.
 */
export function moveToOnread(accepted: net.Socket, reader: OnreadReader): net.Socket {
  const old = accepted as WithHandle;
  const handle = old._handle;
  const state = (old as unknown as { _readableState?: { ended?: unknown } })._readableState;
  const movable =
    Object.getPrototypeOf(old) === net.Socket.prototype &&
    typeof handle?.useUserBuffer === 'function' &&
    typeof state?.ended === 'boolean' &&
    handle.writeQueueSize === 0 &&
    old.writableLength === 0 &&
    !old.destroyed &&
    !old.readableEnded &&
    old.readableFlowing !== true &&
    // read() below would hand buffered data to them a second time
    old.listenerCount('data') === 0 &&
    old.listenerCount('readable') === 0;
  if (!movable) return accepted;
  // (read() may restart the handle's reads; nothing is delivered before this function returns)
  const early: Buffer[] = [];
  for (let c = old.read() as Buffer | null; c !== null; c = old.read() as Buffer | null) early.push(c);
  if (state.ended) {
    // the peer's EOF came with what was buffered: nothing more to read, keep the old socket
    for (const c of early.reverse()) old.unshift(c);
    return accepted;
  }
  old._handle = null;
  const s = new net.Socket({
    handle: handle as never,
    onread: reader.onread,
    // paused as `accepted` was (pauseOnConnect, or a sniff): its reader resumes it
    pauseOnCreate: old.readableFlowing === false,
    allowHalfOpen: old.allowHalfOpen,
    readable: true,
    writable: true,
  } as net.SocketConstructorOpts);
  reader.bind(s);
  if (early.length > 0) {
    const first = early.length === 1 ? early[0]! : Buffer.concat(early);
    if (reader.prepend) reader.prepend(first);
    else s.unshift(first);
  }
  for (const k of REMOTE) {
    const d = Object.getOwnPropertyDescriptor(old, k);
    if (d) Object.defineProperty(s, k, d);
  }
  s.once('close', () => old.destroy());
  old.once('close', () => s.destroy());
  return s;
}
