import { makeRoom } from '../../core/make-room.js';
import type {
  Verdict,
  VerdictShare,
  VerdictShareAnswer,
} from '../../frontdoor/http-proxy/verifiers/types.js';
import { PrimaryAnswers, type WorkerMessage } from './protocol.js';

/**
 * Token verdicts of the HTTP front door under `workers`, shared between the workers through the
 * primary, for verifiers whose answers do not change with a local source of truth (a remote
 * verification URL): a token is verified once for the whole gateway, as in one process, not once
 * per worker that meets it; concurrent requests for one token on several workers share that one
 * call. The key is the cache's SHA-256 of the credential: no token crosses the processes.
 */
export class WorkerVerdicts {
  private readonly answers: PrimaryAnswers<'tether:verdict'>;

  constructor(
    private readonly send: (m: WorkerMessage) => void,
    onMessage: (fn: (m: unknown) => void) => () => void,
  ) {
    this.answers = new PrimaryAnswers('tether:verdict', onMessage);
  }

  /** The share of one route's verifier (`scope`: the route's name). */
  share(scope: string): VerdictShare {
    return {
      get: (key) =>
        new Promise<VerdictShareAnswer>((resolve) =>
          this.answers.ask(
            (id) => this.send({ t: 'tether:verdict', id, scope, key }),
            (m) => resolve(m.answer),
          ),
        ),
      put: (key, answer, ttl) => this.send({ t: 'tether:verdict-put', scope, key, answer, ttl }),
    };
  }

  close(): void {
    this.answers.close();
  }
}

/** Bound on the verdicts the primary keeps for all routes together; the oldest go first. */
const MAX_VERDICTS = 50_000;

/**
 * The primary's book of shared verdicts: fresh answers by route and key, and which worker is
 * verifying a key right now (the others wait for its answer). A worker that dies while verifying
 * sends its waiters to verify themselves.
 */
export class VerdictBook {
  private readonly entries = new Map<string, { verdict: Verdict; expires: number }>();
  private readonly pending = new Map<
    string,
    { owner: number; waiters: Array<(a: VerdictShareAnswer) => void> }
  >();

  constructor(private readonly now: () => number = Date.now) {}

  /** A worker asks: `reply` gets the verdict, or 'go' (it verifies), now or once the verifier answered. */
  get(worker: number, scope: string, key: string, reply: (a: VerdictShareAnswer) => void): void {
    const k = `${scope}\0${key}`;
    const hit = this.entries.get(k);
    if (hit && hit.expires > this.now()) {
      reply({ verdict: hit.verdict, ttl: hit.expires - this.now() });
      return;
    }
    if (hit) this.entries.delete(k);
    const p = this.pending.get(k);
    if (p) {
      p.waiters.push(reply);
      return;
    }
    this.pending.set(k, { owner: worker, waiters: [] });
    reply('go');
  }

  /** The worker that verified tells the answer (or that the verifier could not tell). */
  put(scope: string, key: string, answer: VerdictShareAnswer, ttl: number): void {
    const k = `${scope}\0${key}`;
    const p = this.pending.get(k);
    this.pending.delete(k);
    if (typeof answer === 'object' && 'verdict' in answer && ttl > 0) this.store(k, answer.verdict, ttl);
    for (const w of p?.waiters ?? []) w(answer);
  }

  /** A worker is gone: what it was verifying, its waiters verify themselves. */
  releaseAll(worker: number): void {
    for (const [k, p] of this.pending) {
      if (p.owner !== worker) continue;
      this.pending.delete(k);
      for (const w of p.waiters) w('go');
    }
  }

  get size(): number {
    return this.entries.size;
  }

  private store(k: string, verdict: Verdict, ttl: number): void {
    makeRoom(this.entries, MAX_VERDICTS, this.now());
    this.entries.delete(k);
    this.entries.set(k, { verdict, expires: this.now() + ttl });
  }
}
