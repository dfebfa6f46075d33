import type { PeerUsage, UsageShare } from '../../core/limits/usage.js';
import { isMessage, type PrimaryMessage, type WorkerMessage } from './protocol.js';

/**
 * A worker's side of the traffic counters under `workers` (see UsageShare): what it counts goes
 * to the other workers over the primary, which also tells them when a worker died.
 */
export function workerUsage(
  slot: number,
  send: (m: WorkerMessage) => void,
  onMessage: (fn: (m: unknown) => void) => () => void,
): UsageShare {
  return {
    counted: (seq, rows) => send({ t: 'tether:usage', usage: { worker: slot, kind: 'counted', seq, rows } }),
    written: (upTo) => send({ t: 'tether:usage', usage: { worker: slot, kind: 'written', upTo } }),
    onPeer: (fn: (e: PeerUsage) => void) =>
      onMessage((m) => {
        if (isMessage<PrimaryMessage>(m) && m.t === 'tether:usage' && m.usage.worker !== slot) fn(m.usage);
      }),
  };
}
