/**
 * Coded errors. Every error Tether raises on purpose is a TetherError with a stable `code`
 * from the catalog (./catalog.ts), which gives its HTTP status for the admin API and front
 * doors, its CLI exit code, and whether retrying can help.
 * The message is what a user sees; internal detail goes to `cause` and the log, never to
 * the remote side.
 */
import { CATALOG, type ErrorCode, exitForStatus } from './catalog.js';

export {
  type Area,
  CATALOG,
  type CatalogEntry,
  type ErrorCode,
  EXIT,
  exitForStatus,
  isErrorCode,
  toErrorCode,
} from './catalog.js';

export interface TetherErrorOptions {
  /**
   * Only where one code legitimately answers with more than one status (a timeout beside a
   * refusal, a status relayed from a proxy or the wire); otherwise the catalog's status holds.
   */
  status?: number;
  /** Defaults to the catalog's `retryable`. */
  retryable?: boolean;
  cause?: unknown;
  /** Field-level problems (config keys, request body fields). */
  details?: FieldProblem[];
}

export interface FieldProblem {
  path: string;
  message: string;
}

export class TetherError extends Error {
  override readonly name = 'TetherError';
  readonly code: ErrorCode;
  readonly status: number;
  /** The CLI's exit code: the catalog's (or, with a second status, the one that status gives). */
  readonly exit: number;
  readonly retryable: boolean;
  readonly details: FieldProblem[];

  constructor(code: ErrorCode, message: string, opts: TetherErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    const entry = CATALOG[code];
    this.code = code;
    this.status = opts.status ?? entry.status;
    // A second status (see TetherErrorOptions.status) keeps the exit code that status gives.
    this.exit =
      opts.status === undefined || opts.status === entry.status ? entry.exit : exitForStatus(opts.status);
    this.retryable = opts.retryable ?? entry.retryable;
    this.details = opts.details ?? [];
  }

  /** The admin API's and the peer API's error body. */
  toJSON(): { error: { code: ErrorCode; message: string; details?: FieldProblem[] } } {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.details.length > 0 ? { details: this.details } : {}),
      },
    };
  }
}

export function isTetherError(e: unknown, code?: ErrorCode): e is TetherError {
  return e instanceof TetherError && (code === undefined || e.code === code);
}

/** Constructors for the errors raised from several places (status and exit from the catalog). */
export const errors = {
  invalidTenantId: (id: string) =>
    new TetherError(
      'TENANT_ID_INVALID',
      `invalid tenant id "${id}": use 1-63 characters a-z, 0-9, "_" or "-", starting with a letter or digit`,
    ),
  tenantNotFound: (id: string) => new TetherError('TENANT_NOT_FOUND', `tenant "${id}" does not exist`),
  tenantExists: (id: string) =>
    new TetherError(
      'TENANT_EXISTS',
      `tenant "${id}" already exists (use -f / "force": true to replace its keys)`,
    ),
  invalidQuota: (value: unknown) =>
    new TetherError(
      'QUOTA_INVALID',
      `invalid quota ${JSON.stringify(value)}: must be a whole number from 0 to 3000`,
    ),
  invalidPublicKey: (why: string) =>
    new TetherError('PUBLIC_KEY_INVALID', `not a usable SSH public key: ${why}`),
  badRequest: (message: string, details: FieldProblem[] = []) =>
    new TetherError('BAD_REQUEST', message, { details }),
  unauthorized: () => new TetherError('UNAUTHORIZED', 'missing or wrong admin token'),
  notFound: (what: string) => new TetherError('NOT_FOUND', `${what} not found`),
  config: (file: string, details: FieldProblem[]) =>
    new TetherError(
      'CONFIG_INVALID',
      `${file}: ${details.map((d) => (d.path ? `${d.path}: ${d.message}` : d.message)).join('; ')}`,
      { details },
    ),
  enrollmentInvalid: () =>
    new TetherError('ENROLLMENT_INVALID', 'enrollment token is unknown, already used or expired'),
  unavailable: (what: string, cause?: unknown) =>
    new TetherError('UNAVAILABLE', `${what} is unavailable`, { cause }),
} as const;
