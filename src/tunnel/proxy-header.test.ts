import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test } from 'node:test';
import {
  Command,
  INETProtocol,
  IPv4Address,
  IPv4ProxyAddress,
  IPv6Address,
  IPv6ProxyAddress,
  Peer,
  TransportProtocol,
  V1ProxyProtocol,
  V2ProxyProtocol,
} from 'proxy-protocol-js';
import { quietLog } from '../../test/helpers/core.js';
import { systemClock } from '../core/clock.js';
import { RefusalLog } from '../core/refusals.js';
import { ProxyProtocolGate, type ProxyProtocolSettings, parseProxyHeader } from './proxy-header.js';

const v1 = (line: string) => Buffer.from(line, 'latin1');
const v2 = (cmd: Command, addr: IPv4ProxyAddress | IPv6ProxyAddress) =>
  Buffer.from(new V2ProxyProtocol(cmd, TransportProtocol.STREAM, addr).build());
const v4addr = (src: number[], sport: number) =>
  new IPv4ProxyAddress(IPv4Address.createFrom(src), sport, IPv4Address.createFrom([10, 0, 0, 1]), 443);

test('v1: TCP4, TCP6, UNKNOWN; the bytes after the header are not part of it', () => {
  const line = new V1ProxyProtocol(
    INETProtocol.TCP4,
    new Peer('203.0.113.7', 51000),
    new Peer('10.0.0.1', 443),
  ).build();
  const r = parseProxyHeader(Buffer.concat([v1(line), v1('SSH-2.0-x\r\n')]), 1536);
  assert.deepEqual(r, {
    kind: 'header',
    length: line.length,
    version: 1,
    origin: { address: '203.0.113.7', port: 51000 },
  });
  assert.deepEqual(parseProxyHeader(v1('PROXY TCP6 2001:db8::7 2001:db8::1 40000 22\r\n'), 1536), {
    kind: 'header',
    length: 45,
    version: 1,
    origin: { address: '2001:db8::7', port: 40000 },
  });
  assert.deepEqual(parseProxyHeader(v1('PROXY UNKNOWN\r\n'), 1536), {
    kind: 'header',
    length: 15,
    version: 1,
  });
  assert.deepEqual(parseProxyHeader(v1('PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n'), 1536).kind, 'header');
});

test('v1: truncated waits, malformed and oversized are invalid, wrong family is invalid', () => {
  assert.deepEqual(parseProxyHeader(v1('PRO'), 1536), { kind: 'more' });
  assert.deepEqual(parseProxyHeader(v1('PROXY TCP4 203.0.113.7 10.0.0.1 5'), 1536), { kind: 'more' });
  assert.equal(parseProxyHeader(v1('PROXY TCP4 nonsense\r\n'), 1536).kind, 'invalid');
  assert.match(
    JSON.stringify(parseProxyHeader(v1('PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n'), 1536)),
    /not TCP4/,
  );
  assert.match(
    JSON.stringify(parseProxyHeader(v1('PROXY TCP4 1.2.3.4 10.0.0.1 70000 2\r\n'), 1536)),
    /port out of range/,
  );
  assert.match(
    JSON.stringify(parseProxyHeader(v1(`PROXY TCP4 ${'9'.repeat(120)}`), 1536)),
    /longer than 107/,
  );
  assert.deepEqual(parseProxyHeader(v1('GET / HTTP/1.1\r\n'), 1536), { kind: 'none' });
  assert.deepEqual(parseProxyHeader(v1('SSH-2.0-OpenSSH_9.6\r\n'), 1536), { kind: 'none' });
});

test('v2: PROXY over IPv4 and IPv6, LOCAL (health checks), TLVs, truncation, the size bound', () => {
  const a = v2(Command.PROXY, v4addr([198, 51, 100, 9], 40001));
  assert.deepEqual(parseProxyHeader(a, 1536), {
    kind: 'header',
    length: 28,
    version: 2,
    origin: { address: '198.51.100.9', port: 40001 },
  });
  const six = new IPv6ProxyAddress(
    IPv6Address.createFrom([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]),
    5555,
    IPv6Address.createFrom([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
    22,
  );
  assert.deepEqual(parseProxyHeader(v2(Command.PROXY, six), 1536), {
    kind: 'header',
    length: 52,
    version: 2,
    origin: { address: '2001:db8::7', port: 5555 },
  });
  assert.deepEqual(parseProxyHeader(v2(Command.LOCAL, v4addr([0, 0, 0, 0], 0)), 1536), {
    kind: 'header',
    length: 28,
    version: 2,
  });
  // a TLV after the addresses (PP2_TYPE_NOOP); the length field counts it
  const withTlv = Buffer.concat([
    v2(Command.PROXY, v4addr([198, 51, 100, 9], 1)),
    Buffer.from([0x04, 0x00, 0x02, 0xaa, 0xbb]),
  ]);
  withTlv.writeUInt16BE(12 + 5, 14);
  assert.equal((parseProxyHeader(withTlv, 1536) as { length: number }).length, 33);
  assert.deepEqual(parseProxyHeader(a.subarray(0, 20), 1536), { kind: 'more' });
  assert.deepEqual(parseProxyHeader(a.subarray(0, 5), 1536), { kind: 'more' });
  const huge = Buffer.from(a);
  huge.writeUInt16BE(60_000, 14);
  assert.match(
    JSON.stringify(parseProxyHeader(huge, 1536)),
    /v2 header of 60016 bytes, over the 1536-byte bound/,
  );
  const badVersion = Buffer.from(a);
  badVersion[12] = 0x31;
  assert.equal(parseProxyHeader(badVersion, 1536).kind, 'invalid');
});

test('parser: arbitrary bytes never throw and never claim more than they hold', () => {
  for (let i = 0; i < 5000; i++) {
    const len = Math.floor(Math.random() * 64);
    const prefix = [
      v1('PROXY '),
      v2(Command.PROXY, v4addr([1, 2, 3, 4], 5)).subarray(0, 16),
      Buffer.alloc(0),
    ][i % 3]!;
    const buf = Buffer.concat([
      prefix,
      Buffer.from(Array.from({ length: len }, () => Math.floor(Math.random() * 256))),
    ]);
    const r = parseProxyHeader(buf, 1536);
    if (r.kind === 'header') assert.ok(r.length <= buf.length);
  }
});

async function gated(settings: Partial<ProxyProtocolSettings>) {
  const log = quietLog();
  const gate = new ProxyProtocolGate(
    'test',
    {
      mode: 'required',
      trustedProxies: ['127.0.0.1'],
      timeoutMs: 500,
      maxBytes: 1536,
      maxPending: 10,
      ...settings,
    },
    { log, clock: systemClock, refusals: new RefusalLog(log, systemClock) },
  );
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(`${req.socket.remoteAddress}:${req.socket.remotePort}`);
    res.end(`you are ${req.socket.remoteAddress}`);
  });
  gate.guard(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const send = (bytes: Buffer, localAddress?: string) =>
    new Promise<string>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port, localAddress });
      let got = '';
      s.on('connect', () => s.write(bytes));
      s.on('data', (c: Buffer) => {
        got += c.toString();
      });
      s.on('error', () => {});
      s.on('close', () => resolve(got));
      s.setTimeout(5000, () => s.destroy());
    });
  return { server, send, seen };
}

const GET = v1('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');

test('gate on an HTTP server: the caller address from v1 and v2; refusals close without an answer', async () => {
  const g = await gated({});
  try {
    assert.match(
      await g.send(Buffer.concat([v1('PROXY TCP4 203.0.113.7 10.0.0.1 51000 80\r\n'), GET])),
      /you are 203\.0\.113\.7$/,
    );
    assert.match(
      await g.send(Buffer.concat([v2(Command.PROXY, v4addr([198, 51, 100, 9], 40001)), GET])),
      /you are 198\.51\.100\.9$/,
    );
    assert.match(
      await g.send(Buffer.concat([v2(Command.LOCAL, v4addr([0, 0, 0, 0], 0)), GET])),
      /you are 127\.0\.0\.1$/,
    );
    assert.equal(await g.send(GET), '', 'required: no header, no answer');
    assert.equal(
      await g.send(v1('PROXY TCP4 203.0.113.7 10.0.0.1 5')),
      '',
      'half a header is cut at the deadline',
    );
    assert.equal(
      await g.send(Buffer.concat([v1('PROXY TCP4 1.2.3.4 10.0.0.1 51000 80\r\n'), GET]), '127.0.0.2'),
      '',
      'untrusted',
    );
    assert.deepEqual(g.seen, [
      '203.0.113.7:51000',
      '198.51.100.9:40001',
      `127.0.0.1:${g.seen[2]!.split(':')[1]}`,
    ]);
  } finally {
    g.server.close();
  }
});

test('gate, optional: no header keeps the socket address; a spoofed header from an untrusted address is refused', async () => {
  const g = await gated({ mode: 'optional' });
  try {
    assert.match(await g.send(GET, '127.0.0.2'), /you are 127\.0\.0\.2$/);
    assert.match(await g.send(GET), /you are 127\.0\.0\.1$/);
    assert.equal(
      await g.send(Buffer.concat([v1('PROXY TCP4 10.9.9.9 10.0.0.1 1 80\r\n'), GET]), '127.0.0.2'),
      '',
    );
    assert.match(
      await g.send(Buffer.concat([v1('PROXY TCP4 10.9.9.9 10.0.0.1 1 80\r\n'), GET])),
      /you are 10\.9\.9\.9$/,
    );
  } finally {
    g.server.close();
  }
});
