import { TetherError } from '../../../errors/index.js';

/** What the caller presented: a token, and for Basic the username (an e-mail) with it. */
export interface CallerCredential {
  username?: string;
  token: string;
}

/** A verifier's answer. `scopes: null` means "no restriction". */
export type Verdict =
  | { ok: true; subject: string; scopes: readonly string[] | null }
  | { ok: false; reason: string };

/** Checks a caller's token. Throws a 503 TetherError (see `verifierUnavailable`) when it cannot tell. */
export interface Verifier {
  verify(c: CallerCredential): Promise<Verdict>;
  /** Changes when the verifier's source of truth changed; older cached answers are dropped. */
  generation?(): number;
  close?(): void;
}

export function verifierUnavailable(why: string, cause?: unknown): TetherError {
  return new TetherError('VERIFIER_UNAVAILABLE', `the token verifier is unavailable (${why})`, {
    status: 503,
    retryable: true,
    cause,
  });
}
