import assert from 'node:assert/strict';
import { createCipheriv, createHash } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startConnector, type TestConnector } from '../helpers/connector.js';
import { type DelayRelay, startDelayRelay } from '../helpers/delay-relay.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { type SshForward, sshForward } from '../helpers/openssh.js';

const MiB = 1024 * 1024;

/** Deterministic, incompressible bytes: an AES-CTR keystream, 1 MiB at a time. */
function* stream(total: number): Generator<Buffer> {
  const c = createCipheriv('aes-128-ctr', Buffer.alloc(16, 1), Buffer.alloc(16, 2));
  const zero = Buffer.alloc(MiB);
  for (let sent = 0; sent < total; sent += MiB) yield c.update(zero.subarray(0, Math.min(MiB, total - sent)));
}

function expectedSha(total: number): string {
  const h = createHash('sha256');
  for (const b of stream(total)) h.update(b);
  return h.digest('hex');
}

/**
 * Behind the connector: the first byte a caller sends says what to do. 'D' + 4-byte MiB count:
 * send that many bytes of the stream (a download). 'U' + count: read that many bytes and answer
 * with the SHA-256 of what arrived (an upload).
 */
async function startDataServer(): Promise<{ port: number; close(): void }> {
  const srv = net.createServer((s) => {
    s.setNoDelay(true);
    s.once('readable', function first() {
      const head = s.read(5) as Buffer | null;
      if (!head) return s.once('readable', first);
      const total = head.readUInt32BE(1) * MiB;
      if (head[0] === 0x44) {
        const it = stream(total);
        const pump = () => {
          for (;;) {
            const n = it.next();
            if (n.done) return s.end();
            if (!s.write(n.value)) return s.once('drain', pump);
          }
        };
        pump();
      } else {
        const h = createHash('sha256');
        let got = 0;
        s.on('data', (d: Buffer) => {
          h.update(d);
          got += d.length;
          if (got >= total) s.end(h.digest('hex'));
        });
      }
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => srv.listen({ host: '127.0.0.1', port: 0 }, () => r()));
  return { port: (srv.address() as net.AddressInfo).port, close: () => srv.close() };
}

function command(kind: 'D' | 'U', mib: number): Buffer {
  const b = Buffer.alloc(5);
  b[0] = kind.charCodeAt(0);
  b.writeUInt32BE(mib, 1);
  return b;
}

/** Downloads `mib` MiB through the lease port; resolves with the SHA-256 and the byte count. */
function download(port: number, mib: number): Promise<{ sha: string; bytes: number; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const h = createHash('sha256');
    let bytes = 0;
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(command('D', mib)));
    s.on('data', (d: Buffer) => {
      h.update(d);
      bytes += d.length;
    });
    s.on('end', () => resolve({ sha: h.digest('hex'), bytes, ms: Date.now() - t0 }));
    s.on('error', reject);
  });
}

/** Uploads `mib` MiB; resolves with the SHA-256 the destination computed. */
function upload(port: number, mib: number): Promise<{ sha: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    let answer = '';
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.write(command('U', mib));
      const it = stream(mib * MiB);
      const pump = () => {
        for (;;) {
          const n = it.next();
          if (n.done) return;
          if (!s.write(n.value)) return s.once('drain', pump);
        }
      };
      pump();
    });
    s.on('data', (d: Buffer) => {
      answer += d.toString();
    });
    s.on('end', () => resolve({ sha: answer, ms: Date.now() - t0 }));
    s.on('error', reject);
  });
}

const rate = (mib: number, ms: number) => `${((mib * 8 * 1.048576) / (ms / 1000)).toFixed(0)} Mbit/s`;

describe('over a long link (a delay relay between connector and gateway)', () => {
  let gw: TestGateway;
  let data: { port: number; close(): void };
  let relay: DelayRelay;
  let conn: TestConnector;
  let ssh: SshForward | undefined;
  const DOWN = 256;
  const UP = 64;
  let wantDown: string;
  let wantUp: string;

  before(async () => {
    wantDown = expectedSha(DOWN * MiB);
    wantUp = expectedSha(UP * MiB);
    data = await startDataServer();
    gw = await startGateway();
    // 15 ms one way (30 ms RTT) at 1 Gbit/s: a fixed 2 MiB window would cap a stream near 560 Mbit/s
    relay = await startDelayRelay({
      to: { host: '127.0.0.1', port: gw.sshPort },
      delayMs: 15,
      rateMbit: 1000,
    });
  });

  after(async () => {
    await ssh?.stop();
    await conn?.stop();
    await gw?.stop();
    await relay?.stop();
    data?.close();
  });

  test('a Tether connector moves 256 MiB down and 64 MiB up through it, SHA-256 checked both ways', async (t) => {
    const key = await gw.addTenant('wan');
    conn = await startConnector({
      gateway: relay.port,
      tenant: 'wan',
      keyFile: key,
      config: { gateway_fingerprint: gw.hostFingerprint },
      repositories: { g: { data: `tcp://127.0.0.1:${data.port}` } },
    });
    const port = await conn.leasePort('g/data', 30_000);
    const d = await download(port, DOWN);
    assert.equal(d.bytes, DOWN * MiB);
    assert.equal(d.sha, wantDown, 'the downloaded bytes are the ones the destination sent');
    const u = await upload(port, UP);
    assert.equal(u.sha, wantUp, 'the destination received exactly the uploaded bytes');
    t.diagnostic(`download ${rate(DOWN, d.ms)}, upload ${rate(UP, u.ms)} (30 ms RTT, shared machine)`);
  });

  test('a plain OpenSSH connector (ssh -R) through the same link against the patched gateway: 64 MiB down, checked', async () => {
    const key = await gw.addTenant('wanssh');
    ssh = await sshForward({
      sshPort: relay.port,
      tenant: 'wanssh',
      keyFile: key,
      forwards: [{ label: 'g/data', port: data.port }],
    });
    const port = ssh.ports.get('g/data');
    assert.ok(port, `OpenSSH got a lease: ${ssh.stderr.lines.slice(-5).join('\n')}`);
    const d = await download(port, 64);
    assert.equal(d.bytes, 64 * MiB);
    assert.equal(d.sha, expectedSha(64 * MiB));
    const u = await upload(port, 16);
    assert.equal(u.sha, expectedSha(16 * MiB));
  });
});
