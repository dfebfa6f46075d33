import { startGateway, type TestGateway } from './gateway.js';
import { freePortRange } from './util.js';

export interface ClusterOptions {
  /** The shared PostgreSQL store URL. */
  store: string;
  /** One loopback address per member (127.0.0.2, 127.0.0.3, …): its tunnel, admin and lease ports. */
  ips: string[];
  /** How many lease ports the members share. */
  ports: number;
  /** Extra `forwards` keys (lease_margin, …). */
  forwards?: Record<string, unknown>;
  /** Extra `cluster` keys (dead_after, …) over a 250 ms heartbeat and 1.5 s dead_after. */
  cluster?: Record<string, unknown>;
  /** Worker processes of each member (`workers`); TETHER_TEST_WORKERS otherwise. */
  workers?: number;
}

/** Starts one gateway per address, in turn, as members gw1, gw2, … of one cluster. */
export async function startClusterMembers(o: ClusterOptions): Promise<TestGateway[]> {
  const range = await freePortRange(o.ports);
  const members: TestGateway[] = [];
  for (const [i, ip] of o.ips.entries()) {
    members.push(
      await startGateway({
        config: {
          store: o.store,
          tunnel: { listen: `${ip}:0` },
          admin: { listen: `${ip}:0` },
          forwards: { bind: ip, ports: `${range.low}-${range.high}`, ...o.forwards },
          cluster: {
            node_id: `gw${i + 1}`,
            advertise: ip,
            heartbeat: '250ms',
            dead_after: '1500ms',
            ...o.cluster,
          },
          // a test naming the workers asserts where sessions land: the primary spreads them evenly
          ...(o.workers ? { workers: o.workers, worker_accept: 'primary' } : {}),
        },
      }),
    );
  }
  return members;
}
