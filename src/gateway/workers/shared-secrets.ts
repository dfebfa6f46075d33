import type { SecretShare } from '../../frontdoor/http-proxy/upstream-auth/types.js';
import { isMessage, type PrimaryMessage, type WorkerMessage } from './protocol.js';

/**
 * The HTTP front door's upstream credentials under `workers`: a good value one worker reads (a
 * file's new version, a command's output) goes to the others over the primary and becomes their
 * last good value (see SecretShare). Credentials cross only the gateway's own IPC pipes.
 */
export class WorkerSecrets {
  private readonly listeners = new Map<string, Set<(value: string, at: number) => void>>();
  private readonly off: () => void;

  constructor(
    private readonly send: (m: WorkerMessage) => void,
    onMessage: (fn: (m: unknown) => void) => () => void,
  ) {
    this.off = onMessage((m) => {
      if (!isMessage<PrimaryMessage>(m) || m.t !== 'tether:secret') return;
      for (const fn of this.listeners.get(m.scope) ?? []) fn(m.value, m.at);
    });
  }

  /** The share of one route's credential (`scope`: the route's name). */
  share(scope: string): SecretShare {
    return {
      publish: (value, at) => this.send({ t: 'tether:secret', scope, value, at }),
      onValue: (fn) => {
        let set = this.listeners.get(scope);
        if (!set) {
          set = new Set();
          this.listeners.set(scope, set);
        }
        set.add(fn);
        return () => set.delete(fn);
      },
    };
  }

  close(): void {
    this.off();
  }
}
