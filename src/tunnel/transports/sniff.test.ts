import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { classify, peekFirstChunk, routePlainPort } from './sniff.js';

describe('first-bytes sniffing', () => {
  test('classify: TLS handshake record, SSH identification, HTTP request line, anything else', () => {
    assert.equal(classify(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00])), 'tls');
    assert.equal(classify(Buffer.from('SSH-2.0-OpenSSH_9.2\r\n')), 'ssh');
    assert.equal(classify(Buffer.from('SS')), 'ssh');
    assert.equal(classify(Buffer.from('GET /tunnel HTTP/1.1\r\n')), 'http');
    assert.equal(classify(Buffer.from('OPTIONS * HTTP/1.1\r\n')), 'http');
    assert.equal(classify(Buffer.from([0x80, 0x2e, 0x01])), 'other');
    assert.equal(classify(Buffer.alloc(0)), 'other');
  });

  let server: net.Server;
  let port: number;
  let onConn: (s: net.Socket) => void = () => {};
  before(async () => {
    server = net.createServer({ pauseOnConnect: true }, (s) => onConn(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as net.AddressInfo).port;
  });
  after(() => server.close());

  function accepted(): Promise<net.Socket> {
    return new Promise((r) => {
      onConn = r;
    });
  }

  test('peekFirstChunk puts the chunk back: the next reader sees every byte in order', async () => {
    const got = accepted();
    const c = net.connect(port, '127.0.0.1');
    c.write('SSH-2.0-first');
    const s = await got;
    const first = await peekFirstChunk(s, 2000);
    assert.ok('chunk' in first && first.chunk.toString().startsWith('SSH-2.0-first'));
    c.end(' and the rest');
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.resume();
    await new Promise((r) => s.once('end', r));
    assert.equal(Buffer.concat(chunks).toString(), 'SSH-2.0-first and the rest');
  });

  test('a client that waits for the server to speak first still gets SSH, after the sniffing window', async () => {
    const got = accepted();
    const c = net.connect(port, '127.0.0.1');
    const s = await got;
    const t0 = Date.now();
    const routed = new Promise<string>((resolve) => {
      void routePlainPort(s, {
        ssh: () => resolve('ssh'),
        tls: () => resolve('tls'),
        log: pino({ level: 'silent' }),
      });
    });
    assert.equal(await routed, 'ssh');
    assert.ok(Date.now() - t0 >= 1900, 'after about 2 s');
    c.destroy();
    s.destroy();
  });

  test('TLS on the plain port: to the TLS transport when there is one, else an SSH line the TLS client rejects', async () => {
    const hello = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]);
    let got = accepted();
    let c = net.connect(port, '127.0.0.1');
    c.write(hello);
    let s = await got;
    const routed = await new Promise<string>((resolve) => {
      void routePlainPort(s, {
        ssh: () => resolve('ssh'),
        tls: () => resolve('tls'),
        log: pino({ level: 'silent' }),
      });
    });
    assert.equal(routed, 'tls');
    c.destroy();
    s.destroy();

    got = accepted();
    c = net.connect(port, '127.0.0.1');
    c.write(hello);
    s = await got;
    const lines: string[] = [];
    const log = pino({ level: 'warn' }, { write: (l: string) => lines.push(l) });
    void routePlainPort(s, { ssh: () => assert.fail('not SSH'), tls: undefined, log });
    const answer = await new Promise<string>((resolve) => {
      let text = '';
      c.on('data', (d: Buffer) => {
        text += d.toString();
      });
      c.on('end', () => resolve(text));
    });
    assert.equal(answer, 'SSH-2.0-Tether TLS is not configured on this port\r\n');
    assert.match(lines.join(''), /"event":"tunnel\.tls_not_configured"/);
    c.destroy();
  });
});
