/**
 * The HTTP front door's request boundary, unit level: tenant metadata that cannot be a Host
 * header (a tenant's input; the tunnel server validates it at intake, so here it is injected),
 * and a dependency that throws inside the handler. The caller gets 502, the next request works.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { Duplex } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { FakeClock } from '../../../test/helpers/core.js';
import { httpProxySchema } from '../../config/http-proxy.js';
import type { ForwardRegistry } from '../../core/forward-registry.js';
import { silentLogger } from '../../log/index.js';
import { prepareRoutes } from './index.js';
import { HttpFrontDoor } from './server.js';

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

describe('http-proxy request boundary', () => {
  let door: HttpFrontDoor;
  let port: number;
  let meta: Record<string, unknown> | null = null;
  let throwOnGet = false;
  const refused: string[] = [];

  before(async () => {
    const cfg = httpProxySchema.parse({
      listen: '127.0.0.1:0',
      routes: [{ name: 'wiki', path_prefix: '/wiki', to: 'tenant://acme/grp/web', auth: { type: 'none' } }],
    });
    const clock = new FakeClock();
    const log = silentLogger();
    // A connector that answers every request with "ok" over the tunnel channel.
    const registry = {
      get: () => {
        if (throwOnGet) throw new Error('injected failure');
        return { meta } as unknown as ReturnType<ForwardRegistry['get']>;
      },
      open: async () => {
        let answered = false;
        const stream: Duplex = new Duplex({
          read() {},
          write(_c, _e, cb) {
            cb();
            if (answered) return;
            answered = true;
            stream.push('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
            stream.push(null);
          },
        });
        return { stream, close: () => {} } as unknown as Awaited<ReturnType<ForwardRegistry['open']>>;
      },
    } as Pick<ForwardRegistry, 'open' | 'get'>;
    door = new HttpFrontDoor(cfg, prepareRoutes(cfg, { clock, log }), {
      registry,
      clock,
      log,
      refusals: { refuse: (reason: string) => void refused.push(reason) },
    });
    port = (await door.listen()).port;
  });

  after(() => door.close());

  it('forwards with valid metadata', async () => {
    meta = { host: 'wiki.internal', dest_port: 8080 };
    assert.deepEqual(await get(port, '/wiki/a'), { status: 200, body: 'ok' });
  });

  it('answers 502 for metadata whose host or port cannot be a Host header, and counts it', async () => {
    for (const m of [
      { host: 'evil\u0001host', dest_port: 80 },
      { host: 'a\r\nX-Injected: 1', dest_port: null },
      { host: 'ok.example', dest_port: 70_000 },
    ]) {
      meta = m;
      const r = await get(port, '/wiki/a');
      assert.equal(r.status, 502, JSON.stringify(m));
      assert.equal(
        (JSON.parse(r.body) as { error: { code: string } }).error.code,
        'UPSTREAM_METADATA_INVALID',
      );
      assert.match(r.body, /the repository's metadata cannot be used \(its (host|port) is not a valid/);
    }
    assert.ok(refused.includes('upstream_bad_metadata'));
    meta = { host: 'wiki.internal', dest_port: null };
    assert.equal((await get(port, '/wiki/a')).status, 200, 'the next request works');
  });

  it('an exception inside the handler is answered 502 and the next request works', async () => {
    throwOnGet = true;
    const r = await get(port, '/wiki/a');
    assert.equal(r.status, 502);
    assert.deepEqual(JSON.parse(r.body), {
      error: { code: 'INTERNAL', message: 'the front door could not handle this request' },
    });
    throwOnGet = false;
    assert.equal((await get(port, '/wiki/a')).status, 200);
  });
});
