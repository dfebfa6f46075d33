/**
 * Coded errors. Every error Tether raises on purpose is a TetherError with a stable `code`,
 * an HTTP status for the admin API and front doors, and whether retrying can help.
 * The message is what a user sees; internal detail goes to `cause` and the log, never to
 * the remote side.
 */

export interface TetherErrorOptions {
  status?: number;
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
  readonly code: string;
  readonly status: number;
  readonly retryable: boolean;
  readonly details: FieldProblem[];

  constructor(code: string, message: string, opts: TetherErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.status = opts.status ?? 500;
    this.retryable = opts.retryable ?? false;
    this.details = opts.details ?? [];
  }

  toJSON(): { error: { code: string; message: string; details?: FieldProblem[] } } {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.details.length > 0 ? { details: this.details } : {}),
      },
    };
  }
}

export function isTetherError(e: unknown, code?: string): e is TetherError {
  return e instanceof TetherError && (code === undefined || e.code === code);
}

/** The catalog: one constructor per error a user can meet. */
export const errors = {
  invalidTenantId: (id: string) =>
    new TetherError(
      'TENANT_ID_INVALID',
      `invalid tenant id "${id}": use 1-63 characters a-z, 0-9, "_" or "-", starting with a letter or digit`,
      { status: 400 },
    ),
  tenantNotFound: (id: string) =>
    new TetherError('TENANT_NOT_FOUND', `tenant "${id}" does not exist`, { status: 404 }),
  tenantExists: (id: string) =>
    new TetherError(
      'TENANT_EXISTS',
      `tenant "${id}" already exists (use -f / "force": true to replace its keys)`,
      { status: 409 },
    ),
  invalidQuota: (value: unknown) =>
    new TetherError(
      'QUOTA_INVALID',
      `invalid quota ${JSON.stringify(value)}: must be a whole number from 0 to 3000`,
      { status: 400 },
    ),
  quotaExceeded: (inUse: number, quota: number) =>
    new TetherError('TENANT_QUOTA_EXCEEDED', `quota exceeded (${inUse} of ${quota} in use)`, { status: 429 }),
  tenantDisabled: (id: string) =>
    new TetherError('TENANT_DISABLED', `tenant "${id}" is disabled (quota 0)`, { status: 403 }),
  rangeExhausted: (range: string) =>
    new TetherError('PORT_RANGE_EXHAUSTED', `no free port left in the range ${range}`, {
      status: 503,
      retryable: true,
    }),
  portNotLeased: (port: number) =>
    new TetherError(
      'PORT_NOT_LEASED',
      `port ${port} is not one of this tenant's leases (ask for port 0 to get your lease)`,
      { status: 403 },
    ),
  invalidLabel: (label: string) =>
    new TetherError(
      'LABEL_INVALID',
      `invalid forward label ${JSON.stringify(label)}: use <group>/<repo>, printable ASCII, at most 200 characters`,
      { status: 400 },
    ),
  invalidPublicKey: (why: string) =>
    new TetherError('PUBLIC_KEY_INVALID', `not a usable SSH public key: ${why}`, { status: 400 }),
  badRequest: (message: string, details: FieldProblem[] = []) =>
    new TetherError('BAD_REQUEST', message, { status: 400, details }),
  unauthorized: () => new TetherError('UNAUTHORIZED', 'missing or wrong admin token', { status: 401 }),
  notFound: (what: string) => new TetherError('NOT_FOUND', `${what} not found`, { status: 404 }),
  config: (file: string, details: FieldProblem[]) =>
    new TetherError(
      'CONFIG_INVALID',
      `${file}: ${details.map((d) => (d.path ? `${d.path}: ${d.message}` : d.message)).join('; ')}`,
      { status: 400, details },
    ),
  enrollmentInvalid: () =>
    new TetherError('ENROLLMENT_INVALID', 'enrollment token is unknown, already used or expired', {
      status: 403,
    }),
  unavailable: (what: string, cause?: unknown) =>
    new TetherError('UNAVAILABLE', `${what} is unavailable`, { status: 503, retryable: true, cause }),
} as const;
