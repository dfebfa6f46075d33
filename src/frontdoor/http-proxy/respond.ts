import http from 'node:http';
import type { Duplex } from 'node:stream';
import { type ErrorCode, TetherError } from '../../errors/index.js';
import type { RouteAuthenticator } from './caller-auth.js';
import { API_VERSION, API_VERSION_HEADER, registryErrorBody } from './docker-registry.js';
import type { Route } from './routes.js';

/** What an error answer needs to know of its route. */
export type ErrorRoute = Pick<Route, 'cfg'> & { auth: Pick<RouteAuthenticator, 'challenge'> };

/** Answers with an error: the registry's JSON form on docker_registry routes, Tether's elsewhere. */
export function sendError(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  route: ErrorRoute | undefined,
  status: number,
  code: ErrorCode,
  message: string,
  extra: Record<string, string> = {},
): void {
  if (res.headersSent || res.destroyed) return;
  const docker = route?.cfg.docker_registry === true;
  const body = docker
    ? registryErrorBody(status, message)
    : JSON.stringify(new TetherError(code, message).toJSON());
  const headers: Record<string, string | number> = {
    'Content-Type': docker ? 'application/json; charset=utf-8' : 'application/json',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    ...extra,
  };
  if (docker) headers[API_VERSION_HEADER] = API_VERSION;
  if (status === 401 && route?.auth.challenge) headers['WWW-Authenticate'] = route.auth.challenge;
  // An unread request body is not worth reading just to throw it away.
  if (
    !req.complete &&
    (req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0')
  ) {
    headers.Connection = 'close';
  }
  res.writeHead(status, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** Writes a complete error answer straight to a socket and closes it (no request object to answer on). */
export function sendRawError(socket: Duplex, status: number, code: ErrorCode, message: string): void {
  const body = JSON.stringify({ error: { code, message } });
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** Parser errors that mean a request's framing could be read two ways (counted as `http_framing`). */
export const FRAMING_PARSE_ERRORS: ReadonlySet<string> = new Set([
  'HPE_INVALID_TRANSFER_ENCODING',
  'HPE_UNEXPECTED_CONTENT_LENGTH',
  'HPE_INVALID_CONTENT_LENGTH',
  'HPE_INVALID_CHUNK_SIZE',
  'HPE_CR_EXPECTED',
  'HPE_LF_EXPECTED',
  'HPE_INVALID_HEADER_TOKEN',
]);
