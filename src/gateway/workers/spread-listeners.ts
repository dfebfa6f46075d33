import net from 'node:net';
import { systemClock } from '../../core/clock.js';
import { RefusalLog } from '../../core/refusals.js';
import type { Logger } from '../../log/index.js';
import { type ListenAt, type ListenFn, listenOn } from '../../tunnel/listen.js';
import { isMessage, PrimaryAnswers, type PrimaryMessage, type WorkerMessage } from './protocol.js';

/**
 * The workers' listeners, opened by the primary: it accepts each connection, paused, and passes
 * its socket to the workers that asked for that listener, in turn. The listeners that take
 * connector logins (the tunnel port, the TLS and WebSocket transports) go through here in both
 * `worker_accept` modes: a session lasts, so logins must spread evenly, which the kernel's pick
 * under `os` does not do. Under `worker_accept: primary` the lease ports and front doors do too
 * (under `os` the workers accept on those themselves). Node's cluster module would do the same
 * passing, but it queues every accepted socket in the primary until a worker takes it, with no
 * bound: here the sockets on their way to workers are counted per listener, and past the bound a
 * new connection is closed at once and reported (`max_unauthenticated` for logins,
 * MAX_PASSING_CONNECTIONS for the others). A listener closes once no worker takes it any more
 * (a lease port whose forward went away), as the cluster module's shared ones do.
 */

/** Most connections of a lease port or front door on their way to workers at once. */
export const MAX_PASSING_CONNECTIONS = 1024;

interface Spread {
  key: string;
  server: net.Server;
  opened: Promise<net.AddressInfo>;
  /** The workers taking its connections, in the order they asked (a restarted one asks anew). */
  takers: Array<{ slot: number; target: SpreadTarget }>;
  next: number;
  /** Sockets passed to a worker and not yet sent (node sends one handle at a time per worker). */
  passing: number;
  /** Most sockets on their way at once, and the name of that bound in refusals. */
  bound: { max: number; reason: string };
  /** It takes connector logins. */
  logins: boolean;
}

/** What the primary needs of a worker to pass it a connection. */
export interface SpreadTarget {
  isConnected(): boolean;
  send(m: PrimaryMessage, socket: net.Socket, cb: (err: Error | null) => void): unknown;
}

/** The primary's side: the spread listeners, opened on the first worker's ask. */
export class SpreadListeners {
  private readonly byKey = new Map<string, Spread>();
  private closed = false;
  /** A drain began: no login listener opens or stays open (the others close as workers drop them). */
  private draining = false;
  /** A flood's refusals: logged once per burst, with their count. */
  private readonly refusals: RefusalLog;

  constructor(
    private readonly deps: {
      log: Logger;
      /**
       * Most sockets one login listener has on their way to workers at once
       * (`tunnel.max_unauthenticated`: a flood beyond it is closed here, before it queues in
       * this process); other listeners have MAX_PASSING_CONNECTIONS.
       */
      maxPassing: number;
      /** Most sockets a lease port or front door has on their way at once (tests lower it). */
      maxPassingConnections?: number;
    },
  ) {
    this.refusals = new RefusalLog(deps.log, systemClock);
  }

  /**
   * Worker `slot` (the process `target`) takes connections of the listener `at.key` (opened at `at`
   * on the first ask).
   */
  async take(slot: number, at: ListenAt, target: SpreadTarget): Promise<net.AddressInfo> {
    for (;;) {
      if (this.closed || (this.draining && at.logins))
        throw Object.assign(new Error('the gateway is stopping'), { code: 'ESHUTDOWN' });
      const l = this.byKey.get(at.key) ?? this.open(at);
      const address = await l.opened;
      // closed while it opened (its last taker left): open it again
      if (this.byKey.get(at.key) !== l) continue;
      // a worker that exited while the listener opened is not added (its slot's next process asks anew)
      if (target.isConnected() && !l.takers.some((t) => t.target === target))
        l.takers = [...l.takers.filter((t) => t.slot !== slot), { slot, target }];
      else if (l.takers.length === 0) this.shut(l);
      return address;
    }
  }

  private open(at: ListenAt): Spread {
    const server = net.createServer({ pauseOnConnect: true, noDelay: true }, (s) => this.hand(spread, s));
    const spread: Spread = {
      key: at.key,
      server,
      opened: listenOn(server, at),
      takers: [],
      next: 0,
      passing: 0,
      logins: at.logins === true,
      bound: at.logins
        ? { max: this.deps.maxPassing, reason: 'max_unauthenticated' }
        : {
            max: this.deps.maxPassingConnections ?? MAX_PASSING_CONNECTIONS,
            reason: 'connections_passing_to_workers',
          },
    };
    this.byKey.set(at.key, spread);
    // a listener that could not open is opened again at the next ask (a worker's restart)
    spread.opened.then(
      () => server.on('error', (err) => this.deps.log.error({ err, listener: at.key }, 'listener failed')),
      () => {
        if (this.byKey.get(at.key) === spread) this.byKey.delete(at.key);
      },
    );
    return spread;
  }

  /** Stops listening (no worker takes it any more); sockets on their way carry on. */
  private shut(l: Spread): void {
    if (this.byKey.get(l.key) === l) this.byKey.delete(l.key);
    l.server.close();
  }

  /** The workers taking the connections of `key` now, by slot. */
  takersOf(key: string): number[] {
    return (this.byKey.get(key)?.takers ?? []).map((t) => t.slot);
  }

  /**
   * Worker `slot` takes no more connections of `key`, or of any listener (it exited). A listener
   * no worker takes any more closes, so its port is free again.
   */
  drop(slot: number, key?: string): void {
    for (const [k, l] of [...this.byKey]) {
      if (key !== undefined && k !== key) continue;
      const before = l.takers.length;
      l.takers = l.takers.filter((t) => t.slot !== slot);
      if (before > 0 && l.takers.length === 0) this.shut(l);
    }
  }

  /**
   * A drain: closes the login listeners, so no new session comes here. The lease ports and front
   * doors stay until their workers close them in their own drains (in a cluster a lease port
   * stays open while the connector asked to move still serves it here, see gateway/drain.ts).
   */
  drain(): void {
    this.draining = true;
    for (const l of [...this.byKey.values()]) if (l.logins) this.shut(l);
  }

  /** Closes every spread listener (a stop): no new connection reaches a worker. */
  close(): void {
    this.closed = true;
    for (const l of [...this.byKey.values()]) this.shut(l);
  }

  /** Passes `socket` to the next worker taking this listener's connections (closed if none is left). */
  private hand(l: Spread, socket: net.Socket): void {
    socket.on('error', () => {});
    if (l.passing >= l.bound.max) {
      this.refusals.refuse(
        l.bound.reason,
        l.key,
        { listener: l.key },
        `${l.key}: connection closed: ${l.bound.max} were already on their way to a worker (${l.bound.reason})`,
      );
      socket.destroy();
      return;
    }
    for (let tried = 0; tried < l.takers.length; tried++) {
      const w = l.takers[l.next++ % l.takers.length]!.target;
      if (!w.isConnected()) continue;
      try {
        l.passing++;
        w.send({ t: 'tether:conn', key: l.key }, socket, (err) => {
          l.passing--;
          if (err) socket.destroy();
        });
        return;
      } catch {
        // the channel closed just now: the next worker
        l.passing--;
      }
    }
    socket.destroy();
  }
}

/**
 * A worker's side: a ListenFn that asks the primary for the listener and feeds the connections
 * the primary passes to `server` as if it had accepted them itself (paused, as `pauseOnConnect`
 * leaves them). Closing `server` tells the primary to pass it no more.
 */
export function spreadListen(
  send: (m: WorkerMessage) => void,
  onMessage: (fn: (m: unknown, handle?: unknown) => void) => () => void,
): ListenFn {
  const servers = new Map<string, net.Server>();
  /**
   * Servers closed here whose `tether:unlisten` the primary has not answered yet: a connection it
   * passed on before it read that message still reaches the closed server's handler (a lease port
   * whose forward moved to another worker relays it there), as it would have had it come a moment
   * sooner. IPC keeps the order, so after the answer none comes.
   */
  const closing = new Map<string, { server: net.Server; unanswered: number }>();
  const answers = new PrimaryAnswers('tether:listening', onMessage);
  onMessage((m, handle) => {
    if (!isMessage<PrimaryMessage>(m)) return;
    if (m.t === 'tether:unlistened') {
      const c = closing.get(m.key);
      if (c && --c.unanswered <= 0) closing.delete(m.key);
      return;
    }
    if (m.t !== 'tether:conn' || !(handle instanceof net.Socket)) return;
    const server = servers.get(m.key) ?? closing.get(m.key)?.server;
    handle.on('error', () => {});
    if (!server) {
      handle.destroy();
      return;
    }
    // as the worker's own server would have accepted it: node builds a passed socket half-closing
    // and reading, so a server that pauses on connect gets it paused, and the others get it
    // where its first reader starts the flow (resumed before the server's handler runs, which
    // may pause it again: a resume after the handler would drop what arrives before its reader)
    const opts = server as net.Server & { allowHalfOpen?: boolean; pauseOnConnect?: boolean };
    handle.allowHalfOpen = opts.allowHalfOpen === true;
    if (opts.pauseOnConnect === true) handle.pause();
    else if (handle.readableFlowing === false) handle.resume();
    server.emit('connection', handle);
  });
  return (server, at) =>
    new Promise((resolve, reject) => {
      answers.ask(
        (id) =>
          send({
            t: 'tether:listen',
            id,
            key: at.key,
            host: at.host,
            port: at.port,
            ...(at.logins ? { logins: true } : {}),
          }),
        (m) => {
          if (!m.address) {
            reject(
              Object.assign(new Error(`listen ${m.error ?? 'failed'} ${at.host}:${at.port}`), {
                code: m.error,
              }),
            );
            return;
          }
          servers.set(at.key, server);
          server.once('close', () => {
            if (servers.get(at.key) !== server) return;
            servers.delete(at.key);
            closing.set(at.key, { server, unanswered: (closing.get(at.key)?.unanswered ?? 0) + 1 });
            send({ t: 'tether:unlisten', key: at.key });
          });
          resolve(m.address);
        },
      );
    });
}
