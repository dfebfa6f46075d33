import type net from 'node:net';

/** Where a listener opens: its address, and a name that is the same in every process (`tunnel`). */
export interface ListenAt {
  host: string;
  port: number;
  key: string;
  /** It takes connector logins (the tunnel port and transports): bounded by `max_unauthenticated`. */
  logins?: boolean;
  /** `listenOn` only: not shared through node's cluster module (see `server.listen()`). */
  exclusive?: boolean;
}

/**
 * Opens `server` at `at` and resolves to the address it listens on. The plain way is `listenOn`;
 * a worker (`workers` > 1) opens its listeners through its primary instead, which spreads their
 * connections over the workers (src/gateway/workers/spread-listeners.ts): the ones that take
 * connector logins always, the lease ports and front doors under `worker_accept: primary`.
 */
export type ListenFn = (server: net.Server, at: ListenAt) => Promise<net.AddressInfo>;

/** `server.listen()` on host:port, as a promise of the address (rejects with the listen error). */
export const listenOn: ListenFn = (server, { host, port, exclusive }) =>
  new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, ...(exclusive !== undefined ? { exclusive } : {}) }, () => {
      server.off('error', reject);
      resolve(server.address() as net.AddressInfo);
    });
  });
