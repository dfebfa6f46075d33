import type { AddressInfo } from 'node:net';
import ssh2, { type Connection, type ServerChannel } from 'ssh2';
import { generateKeyPair } from '../../src/core/ssh-keys.js';
import { JsonLineDecoder } from '../../src/tunnel/control-protocol.js';
import { waitFor } from './util.js';

export type Msg = Record<string, unknown> & { type: string };

/**
 * A modified gateway: a real SSH server (ssh2) speaking the real control protocol, whose test
 * decides what it sends. It accepts any key, grants every forward and can open connections on
 * any label, as a compromised gateway would.
 */
export interface FakeGateway {
  port: number;
  /** Every control message the connector sent, in order. */
  messages: Msg[];
  /** Labels the connector asked to forward, with the port granted. */
  forwards: Map<string, number>;
  /** Sends a control message (or raw text) to the connected connector. */
  send(m: Record<string, unknown> | string): void;
  /** Waits for a connector message `pred` accepts (those already received count). */
  waitMessage(pred: (m: Msg) => boolean, what: string, timeout?: number): Promise<Msg>;
  /** Opens a forwarded-tcpip channel for a label; resolves with the channel or the error. */
  open(label: string): Promise<{ ok: true; channel: ssh2.ServerChannel } | { ok: false; error: string }>;
  /** Whether a connector session with a control channel is up. */
  connected(): boolean;
  close(): Promise<void>;
}

export async function startFakeGateway(): Promise<FakeGateway> {
  const hostKey = generateKeyPair().privateKey;
  const messages: Msg[] = [];
  const forwards = new Map<string, number>();
  let client: Connection | undefined;
  let control: ServerChannel | undefined;
  let nextPort = 40000;
  const server = new ssh2.Server({ hostKeys: [hostKey] }, (c) => {
    c.on('authentication', (ctx) => ctx.accept());
    c.on('error', () => {});
    c.on('ready', () => {
      client = c;
      c.on('request', (accept, reject, name, info) => {
        if (name === 'tcpip-forward') {
          const label = (info as { bindAddr: string }).bindAddr;
          const port = forwards.get(label) ?? nextPort++;
          forwards.set(label, port);
          accept?.(port);
        } else if (name === 'cancel-tcpip-forward') {
          forwards.delete((info as { bindAddr: string }).bindAddr);
          accept?.();
        } else reject?.();
      });
      c.on('session', (acceptSession) => {
        const session = acceptSession();
        session.on('subsystem', (accept) => {
          const ch = accept();
          control = ch;
          const decoder = new JsonLineDecoder(
            (m) => {
              messages.push(m as Msg);
              if (m.type === 'hello') {
                ch.write(
                  `${JSON.stringify({ type: 'welcome', tenant: 'acme', quota: 100, gateway: 'evil' })}\n`,
                );
              }
              if (m.type === 'ping') ch.write(`${JSON.stringify({ type: 'pong', id: m.id })}\n`);
            },
            () => {},
          );
          ch.on('data', (d: Buffer) => decoder.push(d));
          ch.on('close', () => {
            if (control === ch) control = undefined;
          });
        });
      });
    });
    c.on('close', () => {
      if (client === c) {
        client = undefined;
        control = undefined;
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    messages,
    forwards,
    send: (m) => {
      if (!control) throw new Error('no connector control channel');
      control.write(typeof m === 'string' ? m : `${JSON.stringify(m)}\n`);
    },
    waitMessage: (pred, what, timeout = 30_000) =>
      waitFor(async () => messages.find(pred) ?? null, { timeout, what }),
    open: (label) =>
      new Promise((resolve) => {
        if (!client) return resolve({ ok: false, error: 'no connector' });
        client.forwardOut(label, forwards.get(label) ?? 1, '203.0.113.9', 5555, (err, ch) => {
          if (err) resolve({ ok: false, error: err.message });
          else resolve({ ok: true, channel: ch as unknown as ssh2.ServerChannel });
        });
      }),
    connected: () => control !== undefined,
    close: async () => {
      client?.end();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
