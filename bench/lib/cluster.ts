/**
 * Gateway clusters for the benchmark: PostgreSQL (test/helpers/postgres.ts), members on
 * 127.0.0.2, .3, .4 sharing one lease range, optionally pinned to CPUs, and haproxy in front of
 * their tunnel ports (test/helpers/haproxy.ts).
 */
import { startHaproxy, type TestHaproxy } from '../../test/helpers/haproxy.js';
import { startPostgres, type TestPostgres } from '../../test/helpers/postgres.js';
import { type Gateway, startGateway } from './paths.js';
import { freePortRange } from './procs.js';

export const MEMBER_IPS = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];

let pg: TestPostgres | undefined;

export async function postgres(): Promise<TestPostgres> {
  pg ??= await startPostgres();
  return pg;
}

export async function stopPostgres(): Promise<void> {
  await pg?.stop();
  pg = undefined;
}

export interface Cluster {
  members: Gateway[];
  ips: string[];
  lb?: TestHaproxy;
  stop(): Promise<void>;
}

export async function startCluster(
  n: number,
  o: { cpus?: (string | undefined)[]; haproxy?: boolean; ports?: number; bin?: string } = {},
): Promise<Cluster> {
  const url = await (await postgres()).newDatabase();
  const ips = MEMBER_IPS.slice(0, n);
  const range = await freePortRange(o.ports ?? 20, ips[0]);
  const members: Gateway[] = [];
  for (const [i, ip] of ips.entries()) {
    members.push(
      await startGateway({
        host: ip,
        range,
        cpus: o.cpus?.[i],
        bin: o.bin,
        config: {
          store: url,
          cluster: { node_id: `gw${i + 1}`, advertise: ip, heartbeat: '1s', dead_after: '5s' },
        },
      }),
    );
  }
  const lb = o.haproxy
    ? await startHaproxy(members.map((m, i) => ({ name: `gw${i + 1}`, host: ips[i]!, port: m.sshPort })))
    : undefined;
  return {
    members,
    ips,
    lb,
    stop: async () => {
      await lb?.stop();
      for (const m of members) await m.stop();
    },
  };
}
