import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import ssh2, { type Connection, type ServerChannel } from 'ssh2';
import { generateKeyPair, parsePublicKey } from '../core/ssh-keys.js';
import { TetherError } from '../errors/index.js';
import { silentLogger } from '../log/index.js';
import { enroll, type TunnelClientOptions, TunnelSession } from './client.js';
import {
  CONTROL_SUBSYSTEM,
  ENROLL_USER,
  encode,
  type GatewayMessage,
  JsonLineDecoder,
} from './control-protocol.js';

const { Server, utils } = ssh2;

/** A small in-process gateway speaking just enough of the contract for the client. */
class FakeGateway {
  readonly hostKey = generateKeyPair();
  readonly hostFingerprint = parsePublicKey(this.hostKey.publicKey).fingerprint;
  readonly tenantKey = generateKeyPair();
  readonly received: Record<string, unknown>[] = [];
  readonly forwards = new Map<string, number>();
  clients: Connection[] = [];
  port = 0;
  private nextPort = 40_000;
  private readonly server: InstanceType<typeof Server>;

  constructor() {
    const allowed = parsePublicKey(this.tenantKey.publicKey).blob;
    this.server = new Server({ hostKeys: [this.hostKey.privateKey] }, (client: Connection) => {
      this.clients.push(client);
      let user = '';
      client.on('error', () => {});
      client.on('authentication', (ctx) => {
        user = ctx.username;
        if (ctx.method !== 'publickey') return ctx.reject(['publickey']);
        if (ctx.username === ENROLL_USER) return ctx.accept();
        if (ctx.username !== 'acme' || !ctx.key.data.equals(allowed)) return ctx.reject(['publickey']);
        if (ctx.signature) {
          const k = utils.parseKey(ctx.key.data);
          if (
            k instanceof Error ||
            Array.isArray(k) ||
            k.verify(ctx.blob!, ctx.signature, ctx.hashAlgo) !== true
          ) {
            return ctx.reject(['publickey']);
          }
        }
        ctx.accept();
      });
      client.on('ready', () => {
        let control: ServerChannel | undefined;
        const send = (m: GatewayMessage) => control?.write(encode(m));
        client.on('session', (acceptSession) => {
          const session = acceptSession();
          session.on('subsystem', (accept, reject, info) => {
            if (info.name !== CONTROL_SUBSYSTEM) return reject();
            control = accept();
            if (user !== ENROLL_USER) send({ type: 'welcome', tenant: user, quota: 3, gateway: 'fake' });
            const dec = new JsonLineDecoder(
              (m) => {
                this.received.push(m);
                if (m.type === 'ping') send({ type: 'pong', id: m.id as number });
                if (m.type === 'enroll') {
                  send(
                    m.token === 'good'
                      ? { type: 'enrolled', tenant: 'acme', fingerprint: 'SHA256:x' }
                      : {
                          type: 'error',
                          code: 'ENROLLMENT_INVALID',
                          message: 'enrollment token is unknown, already used or expired',
                        },
                  );
                }
                if (m.type === 'unregister') send({ type: 'unregistered', fingerprint: 'SHA256:gone' });
              },
              () => {},
            );
            control.on('data', (c: Buffer) => dec.push(c));
          });
        });
        client.on('request', (accept, reject, name, info) => {
          const label = (info as { bindAddr: string }).bindAddr;
          if (name === 'tcpip-forward') {
            if (label.endsWith('/full')) {
              send({
                type: 'refused',
                label,
                code: 'TENANT_QUOTA_EXCEEDED',
                reason: 'quota exceeded (3 of 3 in use)',
              });
              return reject?.();
            }
            const port = this.forwards.get(label) ?? this.nextPort++;
            this.forwards.set(label, port);
            accept?.(port);
          } else if (name === 'cancel-tcpip-forward') {
            this.forwards.delete(label);
            accept?.();
          } else reject?.();
        });
      });
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as AddressInfo).port;
  }

  /** Opens a forwarded-tcpip channel to the connector, as a caller on a lease port would. */
  openForward(label: string, port: number): Promise<ServerChannel> {
    const client = this.clients.at(-1)!;
    return new Promise((resolve, reject) => {
      client.forwardOut(label, port, '127.0.0.1', 5555, (err, ch) => (err ? reject(err) : resolve(ch)));
    });
  }

  close(): Promise<void> {
    for (const c of this.clients) c.end();
    return new Promise((r) => this.server.close(() => r()));
  }
}

describe('tunnel client', () => {
  const gw = new FakeGateway();
  before(() => gw.listen());
  after(() => gw.close());

  const opts = (o: Partial<TunnelClientOptions> = {}): TunnelClientOptions => ({
    host: '127.0.0.1',
    port: gw.port,
    username: 'acme',
    privateKey: gw.tenantKey.privateKey,
    agent: 'tether-connector/test',
    logger: silentLogger(),
    readyTimeout: 5000,
    verifyHostKey: (blob) => ({
      ok: true,
      fingerprint: parsePublicKey(`ssh-ed25519 ${blob.toString('base64')}`).fingerprint,
    }),
    ...o,
  });

  test('open: says hello, waits for welcome, knows the host fingerprint', async () => {
    const s = await TunnelSession.open(opts());
    try {
      assert.equal(s.welcome?.tenant, 'acme');
      assert.equal(s.welcome?.quota, 3);
      assert.equal(s.hostFingerprint, gw.hostFingerprint);
      await s.ping(); // the hello was sent before this ping, on the same channel
      const hello = gw.received.find((m) => m.type === 'hello');
      assert.equal(hello?.agent, 'tether-connector/test');
    } finally {
      s.close();
    }
  });

  test('forward: the lease port; a refusal carries the reason from the control channel', async () => {
    const s = await TunnelSession.open(opts());
    try {
      const port = await s.forward('g/web');
      assert.equal(gw.forwards.get('g/web'), port);
      await assert.rejects(s.forward('g/full'), (e: unknown) => {
        assert.ok(e instanceof TetherError);
        assert.equal(e.code, 'TENANT_QUOTA_EXCEEDED');
        assert.equal(e.message, 'quota exceeded (3 of 3 in use)');
        return true;
      });
      await s.unforward('g/web', port);
      assert.equal(gw.forwards.has('g/web'), false);
    } finally {
      s.close();
    }
  });

  test('incoming forwarded-tcpip: label and lease port reach the owner, bytes flow both ways', async () => {
    const s = await TunnelSession.open(opts());
    try {
      const port = await s.forward('g/echo');
      s.on('connection', (c) => {
        assert.equal(c.label, 'g/echo');
        assert.equal(c.port, port);
        const ch = c.accept();
        ch.on('data', (d: Buffer) => ch.write(Buffer.from(d.toString().toUpperCase())));
      });
      const ch = await gw.openForward('g/echo', port);
      const answer = await new Promise<string>((resolve) => {
        ch.once('data', (d: Buffer) => resolve(d.toString()));
        ch.write('hello');
      });
      assert.equal(answer, 'HELLO');
      ch.close();
    } finally {
      s.close();
    }
  });

  test('ping measures a round trip; close rejects nothing left pending', async () => {
    const s = await TunnelSession.open(opts());
    const ms = await s.ping();
    assert.ok(ms >= 0 && ms < 5000);
    const closed = new Promise((r) => s.once('close', r));
    s.close();
    await closed;
    assert.equal(s.isOpen, false);
  });

  test('unregister resolves with the fingerprint the gateway removed', async () => {
    const s = await TunnelSession.open(opts());
    try {
      assert.equal(await s.unregister(), 'SHA256:gone');
    } finally {
      s.close();
    }
  });

  test("a refused host key fails the session with the verifier's error", async () => {
    const err = new TetherError('GATEWAY_HOST_KEY_MISMATCH', 'mismatch!', { status: 403 });
    await assert.rejects(
      TunnelSession.open(opts({ verifyHostKey: () => ({ ok: false, fingerprint: 'SHA256:x', error: err }) })),
      (e) => e === err,
    );
  });

  test('an unknown key: GATEWAY_AUTH_FAILED naming tenant and key', async () => {
    const other = generateKeyPair();
    await assert.rejects(
      TunnelSession.open(opts({ privateKey: other.privateKey, keyFingerprint: 'SHA256:abc' })),
      (e: unknown) =>
        e instanceof TetherError &&
        e.code === 'GATEWAY_AUTH_FAILED' &&
        e.message.startsWith(
          `the gateway at 127.0.0.1:${gw.port} refused the key SHA256:abc for tenant "acme"`,
        ),
    );
  });

  test('nobody listening: GATEWAY_UNREACHABLE, retryable', async () => {
    const closed = new FakeGateway();
    await closed.listen();
    const port = closed.port;
    await closed.close();
    await assert.rejects(
      TunnelSession.open(opts({ port })),
      (e: unknown) =>
        e instanceof TetherError &&
        e.code === 'GATEWAY_UNREACHABLE' &&
        e.retryable &&
        e.message === `cannot reach the gateway at 127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}`,
    );
  });

  test("enroll: sends only the token; a bad token is refused with the gateway's message", async () => {
    const key = generateKeyPair();
    const before = gw.received.length;
    assert.deepEqual(await enroll({ ...opts(), privateKey: key.privateKey, token: 'good' }), {
      tenant: 'acme',
      fingerprint: 'SHA256:x',
    });
    assert.deepEqual(
      gw.received.slice(before).map((m) => m.type),
      ['enroll'],
    );
    await assert.rejects(
      enroll({ ...opts(), privateKey: key.privateKey, token: 'bad' }),
      /enrollment refused: enrollment token is unknown, already used or expired/,
    );
  });
});
