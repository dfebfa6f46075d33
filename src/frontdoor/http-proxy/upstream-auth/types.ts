import { TetherError } from '../../../errors/index.js';

/** Where an upstream credential comes from: a constant, a file, or a command re-run on a schedule. */
export interface SecretProvider {
  /** The current value; throws a 503 TetherError when there is none yet. */
  current(): string;
  start(): Promise<void>;
  stop(): void;
}

/**
 * Under `workers`: a route's credential as the other workers read it (src/gateway/workers/
 * shared-secrets.ts). A good value read in one worker becomes every worker's last good value,
 * so a file that goes missing, or a command that fails, leaves the whole gateway on the same
 * (newest) value; a command's run in one worker also puts off the others' next runs.
 */
export interface SecretShare {
  /** A good value read here at `at` (ms; a file's change time, a command's run). */
  publish(value: string, at: number): void;
  /** Calls `fn` with every value another worker read; returns the unsubscribe. */
  onValue(fn: (value: string, at: number) => void): () => void;
}

/**
 * Checks a value read from a file or a command before it is used: returns why it cannot be
 * sent (never the value itself), or undefined when it can.
 */
export type SecretCheck = (value: string) => string | undefined;

/** A value read but unusable (it cannot be a header value): the route answers 502 until a good one arrives. */
export function credentialInvalid(why: string): TetherError {
  return new TetherError('UPSTREAM_CREDENTIAL_INVALID', `the upstream credential is not valid (${why})`, {
    status: 502,
    retryable: true,
  });
}

/** Why a string cannot be an HTTP header value (RFC 9110 field-value: visible ASCII, space, tab), or undefined. */
export function headerValueProblem(value: string): string | undefined {
  const bad = /[^\t\x20-\x7e]/.exec(value);
  if (!bad) return undefined;
  const code = bad[0].codePointAt(0)!;
  return `it contains a character not allowed in a header value (U+${code.toString(16).toUpperCase().padStart(4, '0')} at position ${bad.index + 1})`;
}

export function credentialUnavailable(why: string): TetherError {
  return new TetherError(
    'UPSTREAM_CREDENTIAL_UNAVAILABLE',
    `the upstream credential is not available (${why})`,
    {
      status: 503,
      retryable: true,
    },
  );
}
