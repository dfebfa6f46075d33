import { TetherError } from '../../../errors/index.js';

/** What the caller presented: a token, and for Basic the username (an e-mail) with it. */
export interface CallerCredential {
  username?: string;
  token: string;
}

/**
 * A verifier's answer. `scopes: null` means "no restriction". `shared`: another worker verified
 * it (`workers`), so it is not a verification of this request (logged once, where it was made).
 */
export type Verdict =
  | { ok: true; subject: string; scopes: readonly string[] | null; shared?: boolean }
  | { ok: false; reason: string; shared?: boolean };

/** What the gateway's other processes say of a credential's key: their verdict, or "verify it here". */
export type VerdictShareAnswer =
  | { verdict: Verdict; ttl: number }
  | 'go'
  /** The verifier could not tell (the message of the 503), for requests that waited on it. */
  | { unavailable: string };

/**
 * Under `workers`: one route's verdicts shared with the other workers (src/gateway/workers/
 * shared-verdicts.ts), for a verifier that names its `version`.
 */
export interface VerdictShare {
  get(key: string): Promise<VerdictShareAnswer>;
  /** What the verification here gave ('verdict' with how long it may be kept), for the others. */
  put(key: string, answer: Exclude<VerdictShareAnswer, 'go'>, ttl: number): void;
}

/** Checks a caller's token. Throws a 503 TetherError (see `verifierUnavailable`) when it cannot tell. */
export interface Verifier {
  verify(c: CallerCredential): Promise<Verdict>;
  /** Changes when the verifier's source of truth changed; older cached answers are dropped. */
  generation?(): number;
  /**
   * The version of its source of truth as every process that reads the same one names it (a
   * token file's stamp; a verification URL: always the same): under `workers`, verdicts are
   * shared only between workers that name the same version. A verifier without one (group keys,
   * whose answers follow this process's tenant events) shares nothing.
   */
  version?(): string;
  close?(): void;
}

export function verifierUnavailable(why: string, cause?: unknown): TetherError {
  return verifierUnavailableError(`the token verifier is unavailable (${why})`, cause);
}

/** The same 503 with its message already written (another worker's verifier's, under `workers`). */
export function verifierUnavailableError(message: string, cause?: unknown): TetherError {
  return new TetherError('VERIFIER_UNAVAILABLE', message, { status: 503, retryable: true, cause });
}
