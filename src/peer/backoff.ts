/** Reconnect delays: full-jitter exponential backoff (a random wait in [0, min(max, base·2^attempt))). */
export interface BackoffPolicy {
  readonly baseMs: number;
  readonly maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = Object.freeze({ baseMs: 500, maxMs: 30_000 });

/**
 * The wait before retry number `attempt` (0 for the first retry). `random` returns a number in
 * [0, 1) and is injected so tests can pin it.
 */
export function backoffDelay(
  attempt: number,
  random: () => number,
  policy: BackoffPolicy = DEFAULT_BACKOFF,
): number {
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}
