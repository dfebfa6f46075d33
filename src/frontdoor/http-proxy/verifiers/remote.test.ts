import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { silentLogger } from '../../../log/index.js';
import { pluck, RemoteVerifier, scopesFrom } from './remote.js';

describe('http-proxy remote verifier', () => {
  let server: http.Server;
  let base = '';
  const seen: Array<string | undefined> = [];

  before(async () => {
    server = http.createServer((req, res) => {
      seen.push(req.headers.authorization);
      const auth = req.headers.authorization ?? '';
      if (req.url === '/slow') return; // never answers
      if (req.url === '/down') return res.writeHead(502).end();
      if (req.url === '/notjson') return res.writeHead(200).end('<html>');
      if (
        auth === 'Bearer good' ||
        auth === `Basic ${Buffer.from('alice@example.com:good').toString('base64')}`
      ) {
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(
          JSON.stringify({
            licenses: [{ repository: 'acme/app' }, { repository: 'acme/tools' }, { other: 1 }],
          }),
        );
      }
      res.writeHead(401).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  const make = (path: string, o: Partial<ConstructorParameters<typeof RemoteVerifier>[0]> = {}) =>
    new RemoteVerifier(
      { url: `${base}${path}`, method: 'GET', send: 'bearer', timeout: 2_000, ...o },
      silentLogger(),
    );

  it('walks arrays on a dotted path', () => {
    assert.deepEqual(pluck({ a: [{ b: 1 }, { b: [2, 3] }] }, ['a', 'b']), [1, 2, 3]);
    assert.deepEqual(scopesFrom({ repos: ['x', 2, '', 'y'] }, 'repos'), ['x', 'y']);
    assert.deepEqual(scopesFrom({ constructor: 'x' }, 'constructor.name'), []);
  });

  it('2xx is valid, with the scopes the answer lists', async () => {
    const v = await make('/check', { scope_field: 'licenses.repository' }).verify({
      username: 'alice@example.com',
      token: 'good',
    });
    assert.deepEqual(v, { ok: true, subject: 'alice@example.com', scopes: ['acme/app', 'acme/tools'] });
    assert.equal(seen.at(-1), 'Bearer good');
  });

  it('without scope_field a valid token is unrestricted', async () => {
    const v = await make('/check').verify({ token: 'good' });
    assert.ok(v.ok && v.scopes === null);
  });

  it('sends the caller Basic credentials when asked', async () => {
    const v = await make('/check', { send: 'basic' }).verify({
      username: 'alice@example.com',
      token: 'good',
    });
    assert.equal(v.ok, true);
  });

  it('401 is invalid', async () => {
    assert.deepEqual(await make('/check').verify({ token: 'bad' }), {
      ok: false,
      reason: 'verifier answered 401',
    });
  });

  it('5xx, no answer in time, an unreachable URL or a non-JSON answer: unavailable, never a pass', async () => {
    await assert.rejects(
      make('/down').verify({ token: 'good' }),
      (e: Error & { status?: number }) => e.status === 503 && /answered 502/.test(e.message),
    );
    await assert.rejects(
      make('/slow', { timeout: 200 }).verify({ token: 'good' }),
      /no answer within 200 ms/,
    );
    await assert.rejects(
      new RemoteVerifier(
        { url: 'http://127.0.0.1:1/x', method: 'GET', send: 'bearer', timeout: 2_000 },
        silentLogger(),
      ).verify({ token: 'good' }),
      /cannot reach it/,
    );
    await assert.rejects(make('/notjson', { scope_field: 'x' }).verify({ token: 'good' }), /not JSON/);
  });
});
