import {
  describeBound,
  type SlotBound,
  type SlotKeeper,
  UnauthenticatedSlots,
} from '../../tunnel/unauthenticated-slots.js';
import { PrimaryAnswers, type WorkerMessage } from './protocol.js';

/**
 * The unauthenticated bounds under `workers`: one count for the whole gateway, kept by the
 * primary, as a single process keeps it. The operating system spreads connections over the
 * workers as it likes, so a share per worker would refuse a connection within the bound while
 * another worker has room; instead a worker asks the primary for each connection's slot (one IPC
 * round trip, while the socket waits paused) and gives it back at login or close. The primary
 * gives back every slot of a worker that dies.
 */
export class WorkerSlots {
  private readonly answers: PrimaryAnswers<'tether:slot'>;

  constructor(
    private readonly send: (m: WorkerMessage) => void,
    onMessage: (fn: (m: unknown) => void) => () => void,
  ) {
    this.answers = new PrimaryAnswers('tether:slot', onMessage);
  }

  /** The keeper of one listener's slots (`pool`: its name), with that listener's bounds. */
  keeper(pool: string, max: number, maxPerSource: number): SlotKeeper {
    // what this worker holds: its own figures (`count`), never a refusal
    const here = new UnauthenticatedSlots(Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY);
    let asking = 0;
    return {
      acquire: (ip, done) => {
        // a flood waiting for answers holds sockets too: at most `max` questions at once
        if (asking >= max) {
          done({ refused: 'max_unauthenticated' });
          return;
        }
        asking++;
        this.answers.ask(
          (id) => this.send({ t: 'tether:slot', id, pool, ip, max, maxPerSource }),
          (m) => {
            asking--;
            if (m.refused) {
              done({ refused: m.refused });
              return;
            }
            const local = here.take(ip);
            let held = true;
            done({
              release: () => {
                if (!held) return;
                held = false;
                local();
                this.send({ t: 'tether:slot-release', id: m.id });
              },
            });
          },
        );
      },
      describe: (bound: SlotBound, ip: string) => describeBound(bound, ip, max, maxPerSource),
      count: (ip) => here.count(ip),
    };
  }

  close(): void {
    this.answers.close();
  }
}

/**
 * The primary's count of every worker's unauthenticated slots, per listener. A worker's slots
 * are given back when it says so, or all at once when it exits.
 */
export class SlotLedger {
  private readonly pools = new Map<string, UnauthenticatedSlots>();
  /** Per worker slot: its granted slots by request id. */
  private readonly granted = new Map<number, Map<number, () => void>>();

  /** A worker's request: the refusal, or undefined when the slot is now held for it. */
  take(
    worker: number,
    m: { id: number; pool: string; ip: string; max: number; maxPerSource: number },
  ): SlotBound | undefined {
    let pool = this.pools.get(m.pool);
    if (!pool) {
      pool = new UnauthenticatedSlots(m.max, m.maxPerSource);
      this.pools.set(m.pool, pool);
    }
    const refused = pool.refusal(m.ip);
    if (refused) return refused;
    let mine = this.granted.get(worker);
    if (!mine) {
      mine = new Map();
      this.granted.set(worker, mine);
    }
    mine.set(m.id, pool.take(m.ip));
    return undefined;
  }

  release(worker: number, id: number): void {
    const mine = this.granted.get(worker);
    mine?.get(id)?.();
    mine?.delete(id);
  }

  /** The worker is gone: every slot it held comes back. */
  releaseAll(worker: number): void {
    for (const give of this.granted.get(worker)?.values() ?? []) give();
    this.granted.delete(worker);
  }

  /** Slots held in all of one listener (for tests and views). */
  count(pool: string, ip?: string): number {
    return this.pools.get(pool)?.count(ip) ?? 0;
  }
}
