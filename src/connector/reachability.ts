/**
 * Whether a repository's destination answers: a destination that refused a connection (or
 * failed its health check) is withdrawn from the gateway and probed until it answers again,
 * then restored. Without a health check, a probe dials it: first after FIRST_PROBE_MS, then at
 * twice the wait each time up to `probeInterval`, so a service that was only restarting (or an
 * iperf3 between two tests) is back within a fraction of a second, and one that stays down costs
 * one dial every few seconds.
 */
import type { Socket } from 'node:net';
import { destinationOf } from '../config/uri.js';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../log/index.js';
import type { TunnelSession } from '../tunnel/client.js';
import type { HealthChecks } from './health.js';
import { closeGently, type Repo } from './repository.js';

export interface ReachabilityDeps {
  clock: Clock;
  log: Logger;
  health: HealthChecks;
  /** Dials a repository's destination (a managed one only where its policy allows). */
  dial: (r: Repo) => Promise<Socket>;
  /** How often an unreachable destination is probed, ms. */
  probeInterval: number;
  dialTimeout: () => number;
  /** The live session with the gateway, if any. */
  session: () => TunnelSession | undefined;
  /** Whether `r` is still the connector's repository of its label (not removed or replaced). */
  current: (r: Repo) => boolean;
  stopped: () => boolean;
}

/** The first probe of a destination that just refused a connection, ms. */
export const FIRST_PROBE_MS = 250;

export class Reachability {
  constructor(private readonly deps: ReachabilityDeps) {}

  markUnreachable(r: Repo, reason: string): void {
    const first = r.state !== 'unreachable';
    if (
      first &&
      (r.restoredAt === undefined || this.deps.clock.now() - r.restoredAt >= this.deps.probeInterval)
    )
      r.probes = 0;
    r.state = 'unreachable';
    r.reason = reason;
    if (first)
      this.deps.log.warn(
        { event: 'connector.destination_unreachable', label: r.cfg.label, destination: destinationOf(r.cfg) },
        `${r.cfg.label}: ${reason}`,
      );
    if (!r.withdrawn) {
      r.withdrawn = true;
      this.deps.session()?.send({ type: 'withdraw', label: r.cfg.label, reason });
    }
    if (r.probe === undefined) this.scheduleProbe(r);
  }

  markReachable(r: Repo): void {
    this.stopProbe(r);
    r.restoredAt = this.deps.clock.now();
    r.state = r.leasedOn && r.leasedOn === this.deps.session() ? 'active' : 'pending';
    r.reason = null;
    if (r.withdrawn) {
      r.withdrawn = false;
      this.deps.session()?.send({ type: 'restore', label: r.cfg.label });
    }
    this.deps.log.info(
      { event: 'connector.destination_reachable', label: r.cfg.label, destination: destinationOf(r.cfg) },
      `${r.cfg.label}: destination reachable again`,
    );
  }

  private scheduleProbe(r: Repo): void {
    if (this.deps.health.has(r.cfg.label)) return; // its health check decides when it is back
    const wait = Math.min(this.deps.probeInterval, FIRST_PROBE_MS * 2 ** Math.min(r.probes, 20));
    r.probe = this.deps.clock.setTimeout(() => {
      r.probe = undefined;
      if (this.deps.stopped() || !this.deps.current(r) || r.state !== 'unreachable') return;
      this.deps.dial(r).then(
        (sock) => {
          closeGently(sock);
          if (this.deps.current(r) && r.state === 'unreachable') {
            r.probes++;
            this.markReachable(r);
          }
        },
        (e: Error) => {
          if (!this.deps.current(r) || r.state !== 'unreachable') return;
          r.reason = `destination unreachable: ${destinationOf(r.cfg)}: ${e.message}`;
          r.probes++;
          this.scheduleProbe(r);
        },
      );
    }, wait);
  }

  stopProbe(r: Repo): void {
    if (r.probe !== undefined) this.deps.clock.clearTimeout(r.probe);
    r.probe = undefined;
  }
}
