/**
 * The client side of the WebSocket transport: the upgrade on a verified TLS socket, the
 * WebSocket then used as a byte stream for SSH.
 */
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import type tls from 'node:tls';
import { createWebSocketStream, WebSocket } from 'ws';
import type { TetherError } from '../../errors/index.js';
import { fail } from './client-common.js';

function readBody(res: http.IncomingMessage, max: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const finish = () => {
      clearTimeout(timer);
      res.destroy();
      resolve(text.trim().replace(/\s+/g, ' ').slice(0, max));
    };
    const timer = setTimeout(finish, timeoutMs);
    res.setEncoding('utf8');
    res.on('data', (c: string) => {
      text += c;
      if (text.length >= max) finish();
    });
    res.once('end', finish);
    res.once('error', finish);
  });
}

/** The WebSocket upgrade on a verified TLS socket; resolves with the WebSocket as a byte stream. */
export function startWebSocket(
  s: tls.TLSSocket,
  url: string,
  path: string,
  gateway: string,
  timeoutMs: number,
): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      settle(
        fail(
          'GATEWAY_WS_FAILED',
          `${gateway}: no answer to the WebSocket upgrade within ${timeoutMs} ms`,
          504,
        ),
      );
    }, timeoutMs);
    const settle = (err: TetherError | undefined, stream?: Duplex) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        ws.terminate();
        s.destroy();
        reject(err);
      } else resolve(stream!);
    };
    const ws = new WebSocket(url, {
      createConnection: () => s,
      perMessageDeflate: false,
      maxPayload: 4 * 1024 * 1024,
      followRedirects: false,
      // A zero masking key: ws then skips masking (and the gateway unmasking) every byte.
      // Masking protects intermediaries from bytes a browser script chose; these bytes are SSH
      // ciphertext inside TLS, chosen by nobody.
      generateMask: (mask: Buffer) => {
        mask.fill(0);
      },
    });
    ws.once('open', () => {
      ws.removeAllListeners('error');
      const stream = createWebSocketStream(ws, {
        readableHighWaterMark: 256 * 1024,
        writableHighWaterMark: 256 * 1024,
      });
      settle(undefined, stream);
    });
    ws.once('unexpected-response', (_req: http.ClientRequest, res: http.IncomingMessage) => {
      const status = res.statusCode ?? 0;
      void readBody(res, 300, 1000).then((body) => {
        const answer = `HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}${body ? `: ${body}` : ''}`;
        settle(
          status === 404
            ? fail(
                'GATEWAY_WS_NOT_FOUND',
                `${gateway}: the gateway has no WebSocket tunnel at ${path} (${answer}); check the path in gateway: "wss://host/path"`,
                404,
              )
            : fail(
                'GATEWAY_WS_REFUSED',
                `${gateway}: the WebSocket upgrade was refused by the gateway or something in front of it (${answer})`,
              ),
        );
      });
    });
    ws.on('error', (e: Error) => {
      settle(fail('GATEWAY_WS_FAILED', `${gateway}: WebSocket upgrade failed: ${e.message}`, 502, e));
    });
  });
}
