import { TetherError } from '../../../errors/index.js';

/** Where an upstream credential comes from: a constant, a file, or a command re-run on a schedule. */
export interface SecretProvider {
  /** The current value; throws a 503 TetherError when there is none yet. */
  current(): string;
  start(): Promise<void>;
  stop(): void;
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
