/**
 * Helpers for the tunnel transport tests: the TLS and WebSocket addresses a gateway printed,
 * tinyproxy on a free port, and a "proxy" that accepts connections and never answers.
 */
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import type { TestConnector } from './connector.js';
import type { TestGateway } from './gateway.js';
import { freePort, listening, OutputWatcher, spawnTracked, stopProcess, tempDir, waitFor } from './util.js';

/** The addresses in the gateway's "gateway.started" line (tunnel_tls, tunnel_websocket, …). */
export function startedLine(gw: TestGateway): Record<string, string> {
  const line = [...gw.output.lines].reverse().find((l) => l.includes('"event":"gateway.started"'));
  if (!line) throw new Error('no gateway.started line');
  return JSON.parse(line) as Record<string, string>;
}

/** Waits until the connector reports a last error matching `re`; returns the status. */
export async function lastError(c: TestConnector, re: RegExp, timeout = 20_000) {
  return waitFor(
    async () => {
      const st = await c.status();
      return st.lastError && re.test(st.lastError) ? st : null;
    },
    { timeout, what: `a last error matching ${re}` },
  ).catch(async (e: Error) => {
    const st = await c.status().catch(() => undefined);
    throw new Error(`${e.message}; last error: ${st?.lastError}`);
  });
}

export interface TestProxy {
  port: number;
  /** http://127.0.0.1:port */
  url: string;
  output: OutputWatcher;
  process: ChildProcess;
  stop(): Promise<void>;
}

/**
 * tinyproxy (Debian) in the foreground on a free port. It allows CONNECT only to
 * `connectPorts` (403 otherwise); with `basicAuth` it wants those credentials (407).
 */
export async function startTinyproxy(o: {
  connectPorts: number[];
  basicAuth?: { user: string; password: string };
}): Promise<TestProxy> {
  const dir = tempDir('tether-tinyproxy-');
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const conf = join(dir, `tinyproxy-${port}.conf`);
    const lines = [
      ...(process.getuid?.() === 0 ? ['User nobody', 'Group nogroup'] : []),
      `Port ${port}`,
      'Listen 127.0.0.1',
      'Timeout 60',
      'MaxClients 100',
      'Allow 127.0.0.1',
      'LogLevel Connect',
      'DisableViaHeader Yes',
      ...o.connectPorts.map((p) => `ConnectPort ${p}`),
      ...(o.basicAuth ? [`BasicAuth ${o.basicAuth.user} ${o.basicAuth.password}`] : []),
    ];
    writeFileSync(conf, `${lines.join('\n')}\n`);
    // -d: foreground, the log on stdout.
    const p = spawnTracked('tinyproxy', ['-d', '-c', conf], { stdio: ['ignore', 'pipe', 'ignore'] });
    const output = new OutputWatcher(p.stdout!);
    try {
      await waitFor(
        async () => {
          if (p.exitCode !== null) throw new Error(`tinyproxy exited with ${p.exitCode}: ${output.text()}`);
          return listening(port);
        },
        { timeout: 30_000, what: 'tinyproxy to listen' },
      );
    } catch (e) {
      await stopProcess(p);
      if (attempt < 2) continue;
      throw e;
    }
    return { port, url: `http://127.0.0.1:${port}`, output, process: p, stop: () => stopProcess(p) };
  }
}

/** A TCP server that accepts connections and never says a word (a proxy that hangs). */
export async function startSilentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen({ host: '127.0.0.1', port: 0 }, () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
