import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { makeCa, makeServerCert, type ServerCert, type TestCa } from '../../../test/helpers/tls-certs.js';
import { tempDir } from '../../../test/helpers/util.js';
import { type ConnectConfig, connectConfigFromText, redactedConfig } from '../../config/connect.js';
import { TetherError } from '../../errors/index.js';
import type { Logger } from '../../log/index.js';
import { connectViaProxy, gatewayTransport, noProxyMatches, proxyFor } from './client.js';

function load(text: string): ConnectConfig {
  return connectConfigFromText(`ssh_key: k\n${text}`, '/etc/tether/connect.yaml', {});
}

function refused(text: string): string {
  try {
    load(text);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('the config was accepted');
}

describe('connect.yaml: gateway transports', () => {
  test('host:port is plain SSH; tls:// and wss:// default to port 443; wss keeps its path', () => {
    const plain = load('gateway: "gw.example.com:2222"\n');
    assert.deepEqual(plain.gateway, { host: 'gw.example.com', port: 2222 });
    assert.equal(plain.transport.kind, 'ssh');
    const t = load('gateway: "tls://gw.example.com"\n');
    assert.deepEqual([t.gateway, t.transport.kind], [{ host: 'gw.example.com', port: 443 }, 'tls']);
    const w = load('gateway: "wss://gw.example.com:8443/edge/tunnel?x=1"\n');
    assert.deepEqual([w.gateway.port, w.transport.kind, w.transport.path], [8443, 'wss', '/edge/tunnel?x=1']);
    const v6 = load('gateway: "tls://[::1]:4443"\n');
    assert.deepEqual(v6.gateway, { host: '::1', port: 4443 });
  });

  test('malformed transport addresses say what to write', () => {
    assert.match(
      refused('gateway: "ws://gw/tunnel"\n'),
      /gateway: "ws:\/\/gw\/tunnel": unknown transport "ws:\/\/" \(plain ws:\/\/ is not supported, use wss:\/\/\)/,
    );
    assert.match(
      refused('gateway: "https://gw/tunnel"\n'),
      /unknown transport "https:\/\/" \(for a WebSocket tunnel write wss:\/\/\)/,
    );
    assert.match(
      refused('gateway: "tls://gw:443/path"\n'),
      /a tls:\/\/ address has no path \(use "tls:\/\/host:port"\)/,
    );
    assert.match(
      refused('gateway: "wss://u:p@gw/t"\n'),
      /a gateway address carries no user name or password/,
    );
    assert.match(refused('gateway: "tls://gw:99999"\n'), /is not a gateway address/);
  });

  test('gateway_ca and insecure_skip_verify: only with TLS, and not both', () => {
    const c = load('gateway: "tls://gw"\ngateway_ca: certs/ca.pem\n');
    assert.equal(c.transport.ca, '/etc/tether/certs/ca.pem');
    assert.match(
      refused('gateway: "gw:2222"\ngateway_ca: ca.pem\n'),
      /gateway_ca: only applies to a tls:\/\/ or wss:\/\/ gateway/,
    );
    assert.match(
      refused('gateway: "gw:2222"\ninsecure_skip_verify: true\n'),
      /insecure_skip_verify: only applies to a tls:\/\//,
    );
    assert.match(
      refused('gateway: "tls://gw"\ngateway_ca: ca.pem\ninsecure_skip_verify: true\n'),
      /insecure_skip_verify: turns certificate checks off, so gateway_ca would go unused: give only one of them/,
    );
    assert.match(refused('gateway: "tls://gw"\ninsecure_skip_verify: "yes"\n'), /insecure_skip_verify: /);
  });

  test('proxy: a URL or {url, username, password}; the password never shows', () => {
    const a = load('gateway: "tls://gw"\nproxy: "http://bob:p%40ss@proxy.corp:3128"\n');
    assert.deepEqual(a.transport.proxy, {
      host: 'proxy.corp',
      port: 3128,
      username: 'bob',
      password: 'p@ss',
      source: 'connect.yaml proxy',
    });
    const b = load('gateway: "tls://gw"\nproxy: { url: "proxy.corp", username: alice, password: s3cret }\n');
    assert.deepEqual(
      [b.transport.proxy?.port, b.transport.proxy?.username, b.transport.proxy?.password],
      [80, 'alice', 's3cret'],
    );
    const shown = JSON.stringify(redactedConfig(b));
    assert.ok(shown.includes('"password":"[redacted]"') && !shown.includes('s3cret'), shown);
    assert.match(
      refused('gateway: "tls://gw"\nproxy: "https://u:hidden@proxy:3128"\n'),
      /proxy: "https:\/\/u:\*\*\*@proxy:3128": only http:\/\/ proxies are supported/,
    );
    assert.ok(!refused('gateway: "tls://gw"\nproxy: "https://u:hidden@proxy:3128"\n').includes('hidden'));
    assert.match(
      refused('gateway: "tls://gw"\nproxy: { host: p }\n'),
      /proxy: unknown key "host" \(use url, username, password\)/,
    );
    assert.match(
      refused('gateway: "tls://gw"\nproxy: 3128\n'),
      /proxy: use a URL "http:\/\/\[user:password@\]host:port"/,
    );
    assert.match(refused('gateway: "tls://gw"\nproxy: "http://proxy:3128/x"\n'), /a proxy URL has no path/);
  });
});

describe('proxy selection', () => {
  test('NO_PROXY: *, domains and their subdomains, IPs, CIDR blocks, ports', () => {
    const cases: Array<[string, string, number, boolean]> = [
      ['*', 'gw.example.com', 443, true],
      ['example.com', 'gw.example.com', 443, true],
      ['.example.com', 'example.com', 443, true],
      ['*.example.com', 'gw.example.com', 443, true],
      ['example.com', 'badexample.com', 443, false],
      ['gw.example.com:8443', 'gw.example.com', 443, false],
      ['gw.example.com:443', 'GW.example.com', 443, true],
      ['10.0.0.0/8, localhost', '10.1.2.3', 443, true],
      ['10.0.0.0/8', '11.1.2.3', 443, false],
      ['10.0.0.0/8', 'gw.example.com', 443, false],
      ['127.0.0.1', '127.0.0.1', 2222, true],
      ['[::1]:443', '::1', 443, true],
      ['fd00::/8', 'fd12::1', 443, true],
      ['', 'gw', 443, false],
    ];
    for (const [list, host, port, want] of cases) {
      assert.equal(noProxyMatches(list, host, port), want, `${list} vs ${host}:${port}`);
    }
  });

  test('proxy: wins; the environment only applies to tls:// and wss://; lower case first; NO_PROXY', () => {
    const env = { HTTPS_PROXY: 'http://upper:3128', https_proxy: 'http://lower:3128' };
    assert.equal(proxyFor(load('gateway: "tls://gw"\n'), env)?.host, 'lower');
    assert.equal(
      proxyFor(load('gateway: "tls://gw"\n'), { HTTPS_PROXY: 'upper:8080' })?.source,
      'HTTPS_PROXY',
    );
    assert.equal(proxyFor(load('gateway: "gw:2222"\n'), env), undefined);
    assert.equal(proxyFor(load('gateway: "gw:2222"\nproxy: "cfg:1"\n'), env)?.host, 'cfg');
    assert.equal(proxyFor(load('gateway: "wss://gw.corp/t"\nproxy: "cfg:1"\n'), env)?.host, 'cfg');
    assert.equal(proxyFor(load('gateway: "wss://gw.corp/t"\n'), { ...env, NO_PROXY: '.corp' }), undefined);
    assert.throws(
      () => proxyFor(load('gateway: "tls://gw"\n'), { HTTPS_PROXY: 'socks5://x:1' }),
      /HTTPS_PROXY: "socks5:\/\/x:1": only http:\/\/ proxies are supported/,
    );
  });
});

interface FakeProxy {
  port: number;
  auth: Array<string | undefined>;
  close(): Promise<void>;
}

/** A proxy that answers CONNECT with `answer` (or tunnels to `to` on 200, or says nothing). */
async function fakeProxy(answer: string | 'silent' | 'hangup', to?: number): Promise<FakeProxy> {
  const auth: Array<string | undefined> = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    let head = '';
    const onData = (c: Buffer) => {
      head += c.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      s.off('data', onData);
      auth.push(/^proxy-authorization: (.*)$/im.exec(head.slice(0, end))?.[1]?.trim());
      if (answer === 'silent') return;
      if (answer === 'hangup') {
        s.destroy();
        return;
      }
      s.write(answer);
      if (to !== undefined && answer.startsWith('HTTP/1.1 200')) {
        const up = net.connect(to, '127.0.0.1');
        up.on('error', () => s.destroy());
        s.pipe(up).pipe(s);
      } else s.end();
    };
    s.on('data', onData);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    auth,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

async function codeOf(p: Promise<unknown>): Promise<TetherError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof TetherError, String(e));
    return e;
  }
  throw new Error('it did not fail');
}

describe('HTTP CONNECT', () => {
  const proxies: FakeProxy[] = [];
  after(async () => {
    await Promise.all(proxies.map((p) => p.close()));
  });
  async function proxy(answer: string | 'silent' | 'hangup', to?: number) {
    const p = await fakeProxy(answer, to);
    proxies.push(p);
    return p;
  }
  const setting = (port: number, extra: Record<string, string> = {}) => ({
    host: '127.0.0.1',
    port,
    source: 'test',
    ...extra,
  });

  test('200: the socket is the tunnel; Basic credentials are sent when given', async () => {
    const echo = net.createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
    const to = (echo.address() as net.AddressInfo).port;
    const p = await proxy('HTTP/1.1 200 Connection established\r\n\r\n', to);
    const sock = await connectViaProxy(
      setting(p.port, { username: 'bob', password: 'pw:x' }),
      'gw',
      443,
      2000,
    );
    sock.write('ping');
    const got = await new Promise<string>((r) => sock.once('data', (c: Buffer) => r(c.toString())));
    assert.equal(got, 'ping');
    assert.equal(p.auth[0], `Basic ${Buffer.from('bob:pw:x').toString('base64')}`);
    sock.destroy();
    echo.close();
  });

  test('refusals, a proxy that hangs up and one that never answers each say so', async () => {
    const cases: Array<[string, Record<string, string>, string, RegExp]> = [
      [
        'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="corp"\r\n\r\n',
        {},
        'PROXY_AUTH_REQUIRED',
        /requires credentials \(HTTP 407 Proxy Authentication Required; it asks for Basic realm="corp"\)/,
      ],
      [
        'HTTP/1.1 407 Proxy Authentication Required\r\n\r\n',
        { username: 'bob', password: 'nope' },
        'PROXY_AUTH_REQUIRED',
        /refused the credentials of user "bob" \(HTTP 407 Proxy Authentication Required\)$/,
      ],
      [
        'HTTP/1.1 403 Forbidden\r\n\r\n',
        {},
        'PROXY_FORBIDDEN',
        /refused CONNECT to gw:443 \(HTTP 403 Forbidden\)/,
      ],
      [
        'HTTP/1.1 502 Bad Gateway\r\n\r\n',
        {},
        'PROXY_UPSTREAM_FAILED',
        /could not reach gw:443 \(HTTP 502 Bad Gateway\)/,
      ],
      ['HTTP/1.1 418 Teapot\r\n\r\n', {}, 'PROXY_REFUSED', /answered CONNECT gw:443 with HTTP 418 Teapot/],
      ['hangup', {}, 'PROXY_FAILED', /closed the connection without answering CONNECT gw:443/],
      ['silent', {}, 'PROXY_TIMEOUT', /did not answer CONNECT gw:443 within 300 ms$/],
    ];
    for (const [answer, extra, code, re] of cases) {
      const p = await proxy(answer);
      const e = await codeOf(connectViaProxy(setting(p.port, extra), 'gw', 443, 300));
      assert.equal(e.code, code, `${answer}: ${e.message}`);
      assert.match(e.message, re);
      assert.ok(!e.message.includes('nope'), 'no password in the message');
    }
  });
});

describe('TLS dial', () => {
  let dir: string;
  let ca: TestCa;
  let future: ServerCert;
  let server: tls.Server;
  let port: number;
  const warnings: string[] = [];
  const log = {
    warn: (_o: unknown, msg: string) => warnings.push(msg),
    info: () => {},
    debug: () => {},
  } as unknown as Logger;

  before(async () => {
    dir = tempDir('tether-transport-');
    ca = await makeCa(dir);
    future = await makeServerCert(dir, ca, {
      names: ['127.0.0.1'],
      file: 'future',
      notBefore: new Date(Date.now() + 86_400_000),
      notAfter: new Date(Date.now() + 2 * 86_400_000),
    });
    server = tls.createServer(
      { cert: readFileSync(future.certFile), key: readFileSync(future.keyFile) },
      (s) => s.pipe(s),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as net.AddressInfo).port;
  });
  after(() => server.close());

  const cfg = (extra: string) =>
    connectConfigFromText(
      `ssh_key: k\ngateway: "tls://127.0.0.1:${port}"\n${extra}`,
      join(dir, 'connect.yaml'),
      {},
    );

  test('a certificate not valid yet is refused with its start date', async () => {
    const t = gatewayTransport(cfg(`gateway_ca: ${ca.certFile}\n`), { env: {} });
    const e = await codeOf(t.dial!(3000));
    assert.equal(e.code, 'GATEWAY_TLS_NOT_YET_VALID');
    assert.match(e.message, /is not valid before .* GMT \(is this machine's clock right\?\)$/);
  });

  test('insecure_skip_verify: the stream opens, and both the setting and each connection are logged', async () => {
    const t = gatewayTransport(cfg('insecure_skip_verify: true\n'), { env: {}, log });
    assert.equal(t.route.certificate, 'NOT CHECKED');
    const s: Duplex = await t.dial!(3000);
    s.write('x');
    assert.equal(await new Promise<string>((r) => s.once('data', (c: Buffer) => r(c.toString()))), 'x');
    s.destroy();
    assert.match(warnings[0] ?? '', /^INSECURE: the gateway's TLS certificate is NOT checked/);
    assert.match(
      warnings[1] ?? '',
      /^INSECURE: using the gateway's TLS connection although .* is not valid before/,
    );
  });

  test('gateway_ca that cannot be read, or holds no certificate, stops the start', () => {
    assert.throws(
      () => gatewayTransport(cfg('gateway_ca: missing.pem\n')),
      (e: TetherError) =>
        e.code === 'GATEWAY_CA_INVALID' &&
        /gateway_ca: cannot read .*missing\.pem \(ENOENT\)/.test(e.message),
    );
    writeFileSync(join(dir, 'not-a-cert.pem'), 'hello\n');
    assert.throws(
      () => gatewayTransport(cfg('gateway_ca: not-a-cert.pem\n')),
      /gateway_ca: .*not-a-cert\.pem holds no PEM certificate/,
    );
  });

  test('plain SSH without a proxy leaves the dial to the SSH client', () => {
    const t = gatewayTransport(load('gateway: "gw:2222"\n'), { env: { HTTPS_PROXY: 'http://p:1' } });
    assert.equal(t.dial, undefined);
    assert.equal(t.route.text, 'ssh to gw:2222 (direct)');
  });
});
