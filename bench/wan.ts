import { startConnector, startGateway, startIperf, startOpenSsh } from './lib/paths.js';
import { type Child, cpuSplitOf, median, round, withDescendants } from './lib/procs.js';
import { relay } from './lib/relay.js';
import { iperf } from './throughput.js';

type WanPath = 'direct' | 'openssh' | 'tether';
const WAN_PATHS: WanPath[] = ['direct', 'openssh', 'tether'];

export interface WanLinkResult {
  one_way_delay_ms: number;
  rtt_ms: number;
  rate_mbit: number;
  rounds: number;
  seconds: number;
  /** Mbit/s received, median of the rounds, per path and direction. */
  download_mbit: Record<WanPath, number>;
  upload_mbit: Record<WanPath, number>;
  all_download_mbit: Record<WanPath, number[]>;
  all_upload_mbit: Record<WanPath, number[]>;
  /** CPU seconds of the tunnel processes per GB (both directions together), median of the rounds. */
  cpu_s_per_gb: Record<WanPath, number>;
  /** The same for every round, in the order run. */
  all_cpu_s_per_gb: Record<WanPath, number[]>;
  ratio_download: number;
  ratio_upload: number;
}

export interface WanResult {
  links: WanLinkResult[];
}

async function oneLink(
  delayMs: number,
  rateMbit: number,
  o: { rounds: number; seconds: number; nodeFlags?: string[] },
) {
  const dest = await startIperf();
  const children: Child[] = [dest.child];
  try {
    const direct = await relay(dest.port, delayMs, rateMbit);
    children.push(direct.child);
    const gateway = await startGateway({ nodeFlags: o.nodeFlags });
    const key = await gateway.addTenant('wan');
    const gwRelay = await relay(gateway.sshPort, delayMs, rateMbit);
    children.push(gwRelay.child);
    const connector = await startConnector(
      gateway,
      'wan',
      key,
      { 'wan/iperf': dest.port },
      {
        gateway: `127.0.0.1:${gwRelay.port}`,
        nodeFlags: o.nodeFlags,
      },
    );
    const sshRelay: { child?: Child } = {};
    const openssh = await startOpenSsh(
      { 'wan/iperf': dest.port },
      {
        via: async (sshdPort) => {
          const r = await relay(sshdPort, delayMs, rateMbit);
          sshRelay.child = r.child;
          return r.port;
        },
      },
    );
    if (sshRelay.child) children.push(sshRelay.child);
    const ports: Record<WanPath, number> = {
      direct: direct.port,
      openssh: openssh.ports.get('wan/iperf')!,
      tether: connector.ports.get('wan/iperf')!,
    };
    const pids: Record<WanPath, () => number[]> = {
      direct: () => [],
      openssh: () => [...withDescendants(openssh.sshdPid), openssh.sshPid],
      tether: () => [gateway.pid, connector.pid],
    };
    const down = { direct: [], openssh: [], tether: [] } as Record<WanPath, number[]>;
    const up = { direct: [], openssh: [], tether: [] } as Record<WanPath, number[]>;
    const cpu = { direct: [], openssh: [], tether: [] } as Record<WanPath, number[]>;
    // warm-up, not counted (JIT, and the first window growth of a fresh session)
    for (const p of ['openssh', 'tether'] as const) await iperf(ports[p], 1, 1);
    for (let r = 0; r < o.rounds; r++) {
      const order = r % 2 === 0 ? WAN_PATHS : [...WAN_PATHS].reverse();
      for (const p of order) {
        const c0 = cpuSplitOf(pids[p]());
        const d = await iperf(ports[p], 1, o.seconds, { reverse: true });
        const u = await iperf(ports[p], 1, o.seconds, { reverse: false });
        const c1 = cpuSplitOf(pids[p]());
        down[p].push(round(d * 1000, 0));
        up[p].push(round(u * 1000, 0));
        const gb = ((d + u) * o.seconds) / 8;
        cpu[p].push(round((c1.user + c1.sys - c0.user - c0.sys) / gb));
      }
    }
    const med = (x: Record<WanPath, number[]>) =>
      Object.fromEntries(WAN_PATHS.map((p) => [p, round(median(x[p]), 0)])) as Record<WanPath, number>;
    const d = med(down);
    const u = med(up);
    await connector.stop();
    await openssh.stop();
    await gateway.stop();
    const result: WanLinkResult = {
      one_way_delay_ms: delayMs,
      rtt_ms: 2 * delayMs,
      rate_mbit: rateMbit,
      rounds: o.rounds,
      seconds: o.seconds,
      download_mbit: d,
      upload_mbit: u,
      all_download_mbit: down,
      all_upload_mbit: up,
      cpu_s_per_gb: {
        direct: 0,
        openssh: round(median(cpu.openssh)),
        tether: round(median(cpu.tether)),
      },
      all_cpu_s_per_gb: cpu,
      ratio_download: round(d.tether / d.openssh),
      ratio_upload: round(u.tether / u.openssh),
    };
    return result;
  } finally {
    for (const c of children.reverse()) await c.stop();
  }
}

/** The `wan` section: 25 ms and 50 ms one-way (50 and 100 ms RTT) at 1 Gbit/s by default. */
export async function wan(o: {
  delays?: number[];
  rateMbit?: number;
  rounds: number;
  seconds: number;
  log?: (s: string) => void;
  /** Node flags for Tether's gateway and connector (e.g. --trace-gc while investigating). */
  nodeFlags?: string[];
}): Promise<WanResult> {
  const links: WanLinkResult[] = [];
  for (const delay of o.delays ?? [25, 50]) {
    const r = await oneLink(delay, o.rateMbit ?? 1000, o);
    o.log?.(
      `   ${r.rtt_ms} ms RTT: download ${JSON.stringify(r.download_mbit)}, upload ${JSON.stringify(r.upload_mbit)} Mbit/s; CPU/GB ${JSON.stringify(r.cpu_s_per_gb)}, Tether's rounds ${r.all_cpu_s_per_gb.tether.join(' ')}`,
    );
    links.push(r);
  }
  return { links };
}
