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
}
