/**
 * 5. Gateway memory. Idle: a fresh gateway in the default configuration (SQLite, admin API and
 * dashboard, tunnel port), then the same with every front door configured (access proxy, HTTP and
 * SSH front doors): RSS just after the start and once it has been idle for a while. Per tenant: N
 * tenants (1,000 in the full run) added through the admin API with one shared public key, then N
 * SSH sessions from this one process, built with the connector's own session code
 * (src/tunnel/client.ts: control channel, hello, welcome), each with 1 forward, then 4 more
 * forwards each. Gateway RSS before, with 1 and with 5 forwards, each once the gateway is idle
 * again (an idle gateway returns V8's young generation: see src/tunnel/heap-trim.ts).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { silentLogger } from '../src/log/index.js';
import { TunnelSession } from '../src/tunnel/client.js';
import { startGateway } from './lib/paths.js';
import { cpuSeconds, round, rss, runOut, sleep, tempDir } from './lib/procs.js';

export interface IdleMemory {
  /** RSS 2 s after `gateway.started`. */
  rss_started_mib: number;
  /** RSS after IDLE_S of idling (the lowest of a few samples). */
  rss_idle_mib: number;
  /** The same in MB (10^6 bytes), the unit of the target. */
  rss_idle_mb: number;
}

export interface MemoryResult {
  /** Default configuration: SQLite, admin API and dashboard, tunnel port. */
  idle: IdleMemory;
  /** The same with the access proxy, the HTTP and the SSH front doors configured. */
  idle_front_doors: IdleMemory;
  tenants: number;
  rss_base_mib: number;
  rss_1_forward_mib: number;
  rss_5_forwards_mib: number;
  kib_per_idle_tenant: number;
  kib_per_further_forward: number;
  /** Forwards refused (a lease port taken by another program meanwhile). */
  forwards_refused: number;
  connect_s: number;
  gateway_cpu_s_for_logins: number;
}

const KiB = 1024;

async function pool<T>(
  items: T[],
  concurrency: number,
  fn: (x: T, i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i]!, i);
      }
    }),
  );
}

/**
 * How long a gateway is left idle before its RSS is read: long enough for the idle heap trim
 * (src/tunnel/heap-trim.ts: 30 s of quiet, then one or two collections 5 s apart).
 */
export const IDLE_S = 50;

/** RSS after the process has settled: the lowest of a few samples over ~1 s after `waitS`. */
async function settledRss(pid: number, waitS = IDLE_S): Promise<number> {
  await sleep(waitS * 1000);
  let low = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 5; i++) {
    low = Math.min(low, rss(pid));
    await sleep(200);
  }
  return low;
}

/** Every front door on, with the least configuration each needs (nothing is sent to them). */
const FRONT_DOORS = {
  access_proxy: { listen: '127.0.0.1:0' },
  http_proxy: {
    listen: '127.0.0.1:0',
    routes: [{ name: 'web', path_prefix: '/web', to: 'http://127.0.0.1:9', auth: { type: 'none' } }],
  },
  ssh_proxy: {
    listen: '127.0.0.1:0',
    realms: { t: { type: 'tenant', user: 'nobody', password: 'x' } },
  },
};

/** RSS of an idle gateway, just started and after idling; `bin` picks another build (A/B). */
export async function idleMemory(o: { frontDoors?: boolean; bin?: string } = {}): Promise<IdleMemory> {
  const gw = await startGateway({
    bin: o.bin,
    config: o.frontDoors ? FRONT_DOORS : undefined,
  });
  try {
    const started = await settledRss(gw.pid, 2);
    const idle = await settledRss(gw.pid, IDLE_S - 3);
    return {
      rss_started_mib: round(started / KiB / KiB, 1),
      rss_idle_mib: round(idle / KiB / KiB, 1),
      rss_idle_mb: round(idle / 1e6, 1),
    };
  } finally {
    await gw.stop();
  }
}

export async function memory(o: {
  tenants: number;
  bin?: string;
  /** Measure the idle gateways too (default true). */
  idle?: boolean;
}): Promise<MemoryResult> {
  const n = o.tenants;
  const skipped = { rss_started_mib: 0, rss_idle_mib: 0, rss_idle_mb: 0 };
  const idle = o.idle === false ? skipped : await idleMemory({ bin: o.bin });
  const idleFrontDoors = o.idle === false ? skipped : await idleMemory({ bin: o.bin, frontDoors: true });
  const gw = await startGateway({
    bin: o.bin,
    ports: n * 5 + 10,
    config: { tunnel: { listen: '127.0.0.1:0', max_unauthenticated: 512 } },
  });
  const sessions: TunnelSession[] = [];
  try {
    const dir = tempDir('tether-bench-mem-');
    await runOut('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bench', '-f', join(dir, 'key')]);
    const privateKey = readFileSync(join(dir, 'key'), 'utf8');
    const publicKey = readFileSync(join(dir, 'key.pub'), 'utf8').trim();
    const ids = Array.from({ length: n }, (_, i) => `t${String(i).padStart(4, '0')}`);
    await pool(ids, 8, async (id) => {
      await gw.addTenant(id, publicKey);
    });
    const base = await settledRss(gw.pid);

    const log = silentLogger();
    // A lease port another program took meanwhile refuses that forward: count what was granted.
    let granted1 = 0;
    let granted4 = 0;
    const cpu0 = cpuSeconds(gw.pid);
    const t0 = Date.now();
    await pool(ids, 16, async (id) => {
      const s = await TunnelSession.open({
        host: '127.0.0.1',
        port: gw.sshPort,
        username: id,
        privateKey,
        verifyHostKey: () => ({ ok: true, fingerprint: gw.hostFingerprint }),
        agent: 'tether-bench/0',
        logger: log,
        readyTimeout: 60_000,
      });
      sessions.push(s);
      if (
        await s.forward('mem/f0').then(
          () => true,
          () => false,
        )
      )
        granted1++;
    });
    const connectS = (Date.now() - t0) / 1000;
    const cpuLogins = cpuSeconds(gw.pid) - cpu0;
    const one = await settledRss(gw.pid);
    await pool(sessions, 16, async (s) => {
      for (let f = 1; f < 5; f++)
        if (
          await s.forward(`mem/f${f}`).then(
            () => true,
            () => false,
          )
        )
          granted4++;
    });
    const five = await settledRss(gw.pid);
    return {
      idle,
      idle_front_doors: idleFrontDoors,
      tenants: n,
      rss_base_mib: round(base / KiB / KiB, 1),
      rss_1_forward_mib: round(one / KiB / KiB, 1),
      rss_5_forwards_mib: round(five / KiB / KiB, 1),
      kib_per_idle_tenant: round((one - base) / n / KiB, 1),
      kib_per_further_forward: round((five - one) / Math.max(1, granted4) / KiB, 1),
      forwards_refused: n - granted1 + (sessions.length * 4 - granted4),
      connect_s: round(connectS, 1),
      gateway_cpu_s_for_logins: round(cpuLogins, 1),
    };
  } finally {
    for (const s of sessions) s.close();
    await gw.stop();
  }
}
