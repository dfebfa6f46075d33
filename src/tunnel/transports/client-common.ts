/**
 * Pieces shared by the client side of the tunnel transports (the connector dialing the gateway).
 */
import { destinationOf } from '../../config/uri.js';
import { type ErrorCode, TetherError } from '../../errors/index.js';

export function fail(code: ErrorCode, message: string, status = 502, cause?: unknown): TetherError {
  return new TetherError(code, message, { status, retryable: true, cause });
}

export function authority(host: string, port: number): string {
  return destinationOf({ host, port });
}
