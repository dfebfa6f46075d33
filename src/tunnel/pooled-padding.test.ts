import assert from 'node:assert/strict';
import type net from 'node:net';
import { test } from 'node:test';
import ssh2 from 'ssh2';
import { usePooledPadding } from './pooled-padding.js';

const { Client, Server } = ssh2;

test('pooled padding: the AES-GCM cipher class is switched and a session still moves data both ways', async () => {
  const hostKey = ssh2.utils.generateKeyPairSync('ecdsa', { bits: 256 }).private;
  const server = new Server({ hostKeys: [hostKey] }, (conn) => {
    conn.on('authentication', (ctx) => ctx.accept());
    conn.on('ready', () => {
      usePooledPadding(conn);
      conn.on('session', (accept) => {
        accept().on('exec', (acceptExec) => {
          const ch = acceptExec();
          ch.on('data', (d: Buffer) => ch.write(d));
          ch.on('end', () => {
            ch.exit(0);
            ch.end();
          });
        });
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const client = new Client();
  await new Promise<void>((resolve, reject) => {
    client.on('ready', () => resolve()).on('error', reject);
    client.connect({
      host: '127.0.0.1',
      port,
      username: 'u',
      password: 'p',
      algorithms: { cipher: ['aes128-gcm@openssh.com'] },
    });
  });
  usePooledPadding(client);
  const cipher = (client as unknown as { _protocol: { _cipher: object } })._protocol._cipher;
  assert.equal(Object.getPrototypeOf(cipher).constructor.name.startsWith('AESGCM'), true);
  assert.equal(Object.getPrototypeOf(cipher).allocPacket.name, 'allocPacketGcm');
  const payload = Buffer.alloc(300_000);
  for (let i = 0; i < payload.length; i++) payload[i] = i % 251;
  const echoed = await new Promise<Buffer>((resolve, reject) => {
    client.exec('echo', (err, ch) => {
      if (err) return reject(err);
      const parts: Buffer[] = [];
      ch.on('data', (d: Buffer) => parts.push(d));
      ch.on('close', () => resolve(Buffer.concat(parts)));
      ch.end(payload);
    });
  });
  assert.deepEqual(echoed, payload);
  client.end();
  server.close();
});

test('pooled padding: anything that is not an ssh2 AES-GCM cipher is left alone', () => {
  class Other {
    allocPacket(n: number) {
      return Buffer.alloc(n);
    }
  }
  const c = new Other();
  usePooledPadding({ _protocol: { _cipher: c } });
  assert.equal(Object.getPrototypeOf(c).allocPacket, Other.prototype.allocPacket);
  usePooledPadding({});
  usePooledPadding(null);
});
