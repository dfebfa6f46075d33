import type { IncomingMessage, ServerResponse } from 'node:http';
import { isTetherError, TetherError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import { parseExposeRequest } from './expose-request.js';
import type { ExposureManager } from './exposures.js';

const MAX_BODY = 64 * 1024;

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(
          new TetherError('PAYLOAD_TOO_LARGE', `request body is larger than ${MAX_BODY} bytes`, {
            status: 413,
          }),
        );
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: string, type: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, `${JSON.stringify(value)}\n`, 'application/json');
}

function wantsJson(req: IncomingMessage): boolean {
  return /application\/json/i.test(req.headers.accept ?? '');
}

function methodNotAllowed(res: ServerResponse, allow: string[]): TetherError {
  res.setHeader('allow', allow.join(', '));
  return new TetherError('METHOD_NOT_ALLOWED', `method not allowed here (use ${allow.join(', ')})`, {
    status: 405,
  });
}

/**
 * The peer's HTTP API. Shapes follow the connector API this mode re-implements, so its clients
 * work unchanged: POST /expose answers the new id as text (JSON `{"id"}` when the client accepts
 * JSON), DELETE answers an empty 200, GET /health answers "OK". Errors are JSON
 * `{"error": {"code", "message", "details": [{"path", "message"}]}}`.
 */
export function createApiHandler(manager: ExposureManager, logger: Logger) {
  const log = logger.child({ component: 'api' });

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://peer');
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const method = req.method ?? 'GET';

    if (path === '/health') {
      if (method !== 'GET' && method !== 'HEAD') throw methodNotAllowed(res, ['GET']);
      send(res, 200, 'OK', 'text/plain; charset=utf-8');
      return;
    }
    if (path === '/list') {
      if (method !== 'GET') throw methodNotAllowed(res, ['GET']);
      sendJson(res, 200, manager.list());
      return;
    }
    if (path === '/expose') {
      if (method !== 'POST') throw methodNotAllowed(res, ['POST']);
      const text = await readBody(req);
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        throw new TetherError('BAD_REQUEST', 'request body is not valid JSON', { status: 400 });
      }
      const id = await manager.expose(parseExposeRequest(body));
      if (wantsJson(req)) sendJson(res, 200, { id });
      else send(res, 200, id, 'text/plain; charset=utf-8');
      return;
    }
    const m = /^\/expose\/([^/]+)$/.exec(path);
    if (m) {
      if (method !== 'DELETE') throw methodNotAllowed(res, ['DELETE']);
      await manager.remove(decodeURIComponent(m[1]!));
      res.writeHead(200, { 'content-length': 0 });
      res.end();
      return;
    }
    throw new TetherError('NOT_FOUND', `no such endpoint: ${method} ${path}`, { status: 404 });
  }

  return (req: IncomingMessage, res: ServerResponse): void => {
    route(req, res)
      .catch((e: unknown) => {
        if (isTetherError(e)) {
          sendJson(res, e.status, e.toJSON());
          return;
        }
        log.error({ err: (e as Error).message, stack: (e as Error).stack }, 'request failed');
        sendJson(res, 500, { error: { code: 'INTERNAL', message: 'internal error (see the peer log)' } });
      })
      .finally(() => {
        log.debug({ method: req.method, url: req.url, status: res.statusCode }, 'request');
      });
  };
}
