import type net from 'node:net';
import type { Origin } from './broker.js';

/**
 * The lease-binding port: how the tunnel (and cluster relaying) makes a lease's port reachable
 * and stops it again. The tunnel declares it; the raw-port front door implements it (one TCP
 * listener per lease port) and the gateway wires that implementation in.
 */
export interface LeaseBinder {
  /** Whether the port is bound now. */
  isOpen(port: number): boolean;
  /** Binds the port (idempotent). Rejects with an Error whose message a tenant may read. */
  open(port: number): Promise<void>;
  /** Unbinds the port, unless a local or remote forward still uses it. */
  close(port: number): void;
  /**
   * Set by a cluster member: for a connection relayed by another member, the caller's address
   * the relay names; `undefined` when the connection is not from a member. Rejects when a
   * member's relay header is refused (the connection is closed).
   */
  relayOrigin?: (socket: net.Socket, port: number) => Promise<RelayedOrigin | undefined> | undefined;
}

/** A relayed caller's address, and what the relaying member is sent once the channel is open. */
export interface RelayedOrigin extends Origin {
  acceptedReply?: Buffer;
  /** What tells the relaying side a refusal that is the caller's answer (a cap, a quota). */
  refusedReply?: (refused: unknown) => Buffer | undefined;
}
