import net from 'node:net';
import { systemClock } from '../../core/clock.js';
import { RefusalLog } from '../../core/refusals.js';
import type { Logger } from '../../log/index.js';
import { type ListenAt, type ListenFn, listenOn } from '../../tunnel/listen.js';
import { isMessage, PrimaryAnswers, type PrimaryMessage, type WorkerMessage } from './protocol.js';

/**
 * Connector logins under `worker_accept: os`. There the workers accept the connections of their
 * listeners themselves (lease ports, front doors) and the kernel picks the worker, which is
 * cheap but can spread new sessions unevenly; a session lasts, so an uneven spread of logins
 * stays. So the listeners that take logins (the tunnel port, the TLS and WebSocket transports)
 * are opened by the primary instead: it accepts each connection, paused, and passes its socket
 * to the workers that asked for that listener, in turn. A login is rare next to the
 * connections the sessions then carry, so the message per connection costs little here.
 */

interface Spread {
  key: string;
  server: net.Server;
  opened: Promise<net.AddressInfo>;
  /** The workers taking its connections, in the order they asked (a restarted one asks anew). */
  takers: Array<{ slot: number; target: SpreadTarget }>;
  next: number;
  /** Sockets passed to a worker and not yet sent (node sends one handle at a time per worker). */
  passing: number;
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
  /** A flood's refusals: logged once per burst, with their count. */
  private readonly refusals: RefusalLog;

  constructor(
    private readonly deps: {
      log: Logger;
      /**
       * Most sockets one listener has on their way to workers at once (`tunnel.max_unauthenticated`:
       * a flood beyond it is closed here, before it queues in this process).
       */
      maxPassing: number;
    },
  ) {
    this.refusals = new RefusalLog(deps.log, systemClock);
  }

  /**
   * Worker `slot` (the process `target`) takes connections of the listener `at.key` (opened at `at`
   * on the first ask).
   */
  async take(slot: number, at: ListenAt, target: SpreadTarget): Promise<net.AddressInfo> {
    if (this.closed) throw Object.assign(new Error('the gateway is stopping'), { code: 'ESHUTDOWN' });
    let l = this.byKey.get(at.key);
    if (!l) {
      const server = net.createServer({ pauseOnConnect: true, noDelay: true }, (s) => this.hand(spread, s));
      const spread: Spread = {
        key: at.key,
        server,
        opened: listenOn(server, at),
        takers: [],
        next: 0,
        passing: 0,
      };
      l = spread;
      this.byKey.set(at.key, spread);
      // a listener that could not open is opened again at the next ask (a worker's restart)
      spread.opened.then(
        () => server.on('error', (err) => this.deps.log.error({ err, listener: at.key }, 'listener failed')),
        () => {
          if (this.byKey.get(at.key) === spread) this.byKey.delete(at.key);
        },
      );
    }
    const address = await l.opened;
    // a worker that exited while the listener opened is not added (its slot's next process asks anew)
    if (target.isConnected() && !l.takers.some((t) => t.target === target))
      l.takers = [...l.takers.filter((t) => t.slot !== slot), { slot, target }];
    return address;
  }

  /** The workers taking the connections of `key` now, by slot. */
  takersOf(key: string): number[] {
    return (this.byKey.get(key)?.takers ?? []).map((t) => t.slot);
  }

  /** Worker `slot` takes no more connections of `key`, or of any listener (it exited). */
  drop(slot: number, key?: string): void {
    for (const [k, l] of this.byKey)
      if (key === undefined || k === key) l.takers = l.takers.filter((t) => t.slot !== slot);
  }

  /** Closes every spread listener (a drain or a stop): no new login reaches a worker. */
  close(): void {
    this.closed = true;
    for (const l of this.byKey.values()) l.server.close();
    this.byKey.clear();
  }

  /** Passes `socket` to the next worker taking this listener's connections (closed if none is left). */
  private hand(l: Spread, socket: net.Socket): void {
    socket.on('error', () => {});
    if (l.passing >= this.deps.maxPassing) {
      this.refusals.refuse(
        'max_unauthenticated',
        l.key,
        { listener: l.key },
        `${l.key}: connection closed: ${this.deps.maxPassing} were already on their way to a worker (max_unauthenticated)`,
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
  const answers = new PrimaryAnswers('tether:listening', onMessage);
  onMessage((m, handle) => {
    if (!isMessage<PrimaryMessage>(m) || m.t !== 'tether:conn' || !(handle instanceof net.Socket)) return;
    const server = servers.get(m.key);
    handle.on('error', () => {});
    if (!server) {
      handle.destroy();
      return;
    }
    handle.pause();
    server.emit('connection', handle);
  });
  return (server, at) =>
    new Promise((resolve, reject) => {
      answers.ask(
        (id) => send({ t: 'tether:listen', id, key: at.key, host: at.host, port: at.port }),
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
            send({ t: 'tether:unlisten', key: at.key });
          });
          resolve(m.address);
        },
      );
    });
}
