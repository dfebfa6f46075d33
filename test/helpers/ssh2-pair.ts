/**
 * A real ssh2 server and client on loopback with one channel between them, for tests of ssh2
 * itself and of the project's patch to it (src/tunnel/windows.test.ts, packet-read.test.ts).
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import ssh2 from 'ssh2';

const { Client, Server } = ssh2;

export interface Ssh2Pair {
  server: InstanceType<typeof Server>;
  client: InstanceType<typeof Client>;
  /** The server's side of the client's connection. */
  conn: ssh2.Connection;
  /** The channel's server side and client side. */
  serverCh: ssh2.ServerChannel;
  clientCh: ssh2.ClientChannel;
  close(): void;
}

/**
 * Connects an ssh2 client to an ssh2 server that accepts any login, and opens one channel: an
 * `exec` session, or a `direct-tcpip` channel (`forwardOut`). `server` and `client` are added to
 * each side's configuration (algorithms, the patch's options). With `accepted`, the server's
 * connection is accepted by a listener of the test's own (paused, as the gateway's tunnel port
 * accepts) and goes to ssh2 as `accepted` returns it.
 */
export async function ssh2Pair(o: {
  channel: 'exec' | 'tcpip';
  server?: object;
  client?: Partial<ssh2.ConnectConfig>;
  accepted?: (s: net.Socket) => Duplex;
}): Promise<Ssh2Pair> {
  const hostKey = ssh2.utils.generateKeyPairSync('ed25519').private;
  let serverCh!: ssh2.ServerChannel;
  let serverConn!: ssh2.Connection;
  let gotIt!: () => void;
  const gotChannel = new Promise<void>((resolve) => {
    gotIt = resolve;
  });
  const took = (ch: ssh2.ServerChannel) => {
    serverCh = ch;
    gotIt();
  };
  // biome-ignore lint/suspicious/noExplicitAny: the patched options are not in @types/ssh2
  const server = new Server({ hostKeys: [hostKey], ...o.server } as any, (conn) => {
    serverConn = conn;
    conn.on('authentication', (ctx) => ctx.accept());
    if (o.channel === 'tcpip') conn.on('tcpip', (accept) => took(accept()));
    else
      conn.on('ready', () => {
        conn.on('session', (accept) => {
          accept().on('exec', (acceptExec) => took(acceptExec()));
        });
      });
  });
  const accepted = o.accepted;
  const listener = accepted
    ? net.createServer({ pauseOnConnect: true }, (s) =>
        (server as unknown as { injectSocket(d: Duplex): void }).injectSocket(accepted(s)),
      )
    : undefined;
  await new Promise<void>((r) => (listener ?? server).listen(0, '127.0.0.1', () => r()));
  const port = ((listener ?? server).address() as net.AddressInfo).port;
  const client = new Client();
  await new Promise<void>((resolve, reject) => {
    client.on('ready', () => resolve()).on('error', reject);
    client.connect({ host: '127.0.0.1', port, username: 'u', password: 'p', ...o.client });
  });
  const clientCh = await new Promise<ssh2.ClientChannel>((resolve, reject) => {
    const cb = (err: Error | undefined, ch: ssh2.ClientChannel) => (err ? reject(err) : resolve(ch));
    if (o.channel === 'tcpip') client.forwardOut('127.0.0.1', 1, '127.0.0.1', 2, cb);
    else client.exec('x', cb);
  });
  await gotChannel;
  return {
    server,
    client,
    conn: serverConn,
    serverCh,
    clientCh,
    close: () => {
      client.end();
      server.close();
      listener?.close();
    },
  };
}
