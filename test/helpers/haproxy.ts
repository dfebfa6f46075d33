import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, startServerProcess, stopProcess, tempDir } from './util.js';

export interface TestHaproxy {
  port: number;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** Debian's haproxy in TCP mode in front of `servers` (host:port), with health checks and redispatch. */
export async function startHaproxy(
  servers: Array<{ name: string; host: string; port: number }>,
): Promise<TestHaproxy> {
  const dir = tempDir('tether-haproxy-');
  const port = await freePort();
  const cfg = [
    'global',
    '  maxconn 2000',
    'defaults',
    '  mode tcp',
    '  timeout connect 1s',
    '  timeout client 1h',
    '  timeout server 1h',
    '  retries 3',
    '  option redispatch',
    'frontend tunnel',
    `  bind 127.0.0.1:${port}`,
    '  default_backend members',
    'backend members',
    '  balance roundrobin',
    ...servers.map((s) => `  server ${s.name} ${s.host}:${s.port} check inter 300 fall 1 rise 2`),
    '',
  ].join('\n');
  const file = join(dir, 'haproxy.cfg');
  writeFileSync(file, cfg);
  const { process: p } = await startServerProcess('haproxy', ['-f', file, '-db'], [port]);
  return { port, process: p, stop: () => stopProcess(p, 2_000) };
}
