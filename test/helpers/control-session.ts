import { readFileSync } from 'node:fs';
import ssh2, { type ClientChannel } from 'ssh2';
import { JsonLineDecoder } from '../../src/tunnel/control-protocol.js';
import { waitFor } from './util.js';

export type ControlMessage = Record<string, unknown> & { type: string };

/** An ssh2 client logged in to the tunnel port that speaks the control protocol by hand. */
export interface ControlSession {
  client: ssh2.Client;
  channel: ClientChannel;
  /** Every message the gateway sent on the control channel, in order. */
  messages: ControlMessage[];
  send(msg: Record<string, unknown>): void;
  /** Writes raw bytes on the control channel. */
  write(data: string | Buffer): void;
  /** Waits for a message `pred` accepts (messages already received count). */
  waitMessage(pred: (m: ControlMessage) => boolean, timeout?: number, what?: string): Promise<ControlMessage>;
  /** A ping answered: the session and its control channel still work. */
  ping(timeout?: number): Promise<void>;
  /** Asks for a remote forward; resolves with the port or the error text. */
  forward(label: string): Promise<number | string>;
  /** Resolves once the connection has closed. */
  closed: Promise<void>;
  end(): void;
}

export interface ControlSessionOptions {
  port: number;
  user: string;
  keyFile?: string;
  privateKey?: Buffer | string;
  from?: string;
  subsystem?: string;
}

/** Logs in and opens the control channel. */
export function openControlSession(o: ControlSessionOptions): Promise<ControlSession> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    let pingId = 1_000_000;
    const messages: ControlMessage[] = [];
    let closedResolve: () => void = () => {};
    const closed = new Promise<void>((r) => {
      closedResolve = r;
    });
    client.on('close', () => closedResolve());
    client.once('error', reject);
    client.once('ready', () => {
      client.subsys(o.subsystem ?? 'tether-control', (err, channel) => {
        if (err) return reject(err);
        const decoder = new JsonLineDecoder(
          (m) => messages.push(m as ControlMessage),
          () => {},
        );
        channel.on('data', (c: Buffer) => decoder.push(c));
        channel.stderr.resume();
        channel.on('error', () => {});
        client.removeListener('error', reject);
        client.on('error', () => {});
        const s: ControlSession = {
          client,
          channel,
          messages,
          closed,
          send: (m) => channel.write(`${JSON.stringify(m)}\n`),
          write: (d) => channel.write(d),
          waitMessage: (pred, timeout = 20_000, what = 'a control message') =>
            waitFor(() => messages.find(pred), { timeout, what }),
          ping: async (timeout = 20_000) => {
            const id = pingId++;
            s.send({ type: 'ping', id });
            await s.waitMessage((m) => m.type === 'pong' && m.id === id, timeout, `pong ${id}`);
          },
          forward: (label) =>
            new Promise((res) => {
              client.forwardIn(label, 0, (e, port) => res(e ? e.message : port));
            }),
          end: () => client.end(),
        };
        resolve(s);
      });
    });
    client.connect({
      host: '127.0.0.1',
      port: o.port,
      localAddress: o.from ?? '127.0.0.1',
      username: o.user,
      privateKey: o.privateKey ?? (o.keyFile ? readFileSync(o.keyFile) : undefined),
      readyTimeout: 30_000,
    });
  });
}
