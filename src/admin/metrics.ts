import client from 'prom-client';
import type { ForwardRegistry } from '../core/forward-registry.js';
import type { Store } from '../store/types.js';

/** Prometheus metrics of one gateway (a registry per instance: no globals). */
export class GatewayMetrics {
  readonly registry = new client.Registry();
  readonly connectionsOpened: client.Counter<'tenant'>;
  readonly bytes: client.Counter<'tenant' | 'direction'>;
  readonly authFailures: client.Counter<'reason'>;
  readonly forwardsRefused: client.Counter<'code'>;
  readonly sessionsOpened: client.Counter;

  constructor(store: Store, live: ForwardRegistry) {
    const r = this.registry;
    client.collectDefaultMetrics({ register: r, prefix: 'tether_' });
    new client.Gauge({
      name: 'tether_tenants',
      help: 'Tenants in the store',
      registers: [r],
      async collect() {
        this.set((await store.listTenants()).length);
      },
    });
    new client.Gauge({
      name: 'tether_sessions',
      help: 'Live SSH sessions',
      registers: [r],
      collect() {
        this.set(live.sessionsOf().length);
      },
    });
    new client.Gauge({
      name: 'tether_forwards',
      help: 'Live forwards (lease ports listening)',
      registers: [r],
      collect() {
        this.set(live.list().length);
      },
    });
    new client.Gauge({
      name: 'tether_connections_active',
      help: 'Connections open through forwards',
      registers: [r],
      collect() {
        this.set(live.list().reduce((n, f) => n + f.connections, 0));
      },
    });
    this.connectionsOpened = new client.Counter({
      name: 'tether_connections_opened_total',
      help: 'Connections opened through forwards',
      labelNames: ['tenant'],
      registers: [r],
    });
    this.bytes = new client.Counter({
      name: 'tether_bytes_total',
      help: 'Bytes carried through forwards; direction "in" is toward the connector',
      labelNames: ['tenant', 'direction'],
      registers: [r],
    });
    this.authFailures = new client.Counter({
      name: 'tether_auth_failures_total',
      help: 'Refused logins by reason',
      labelNames: ['reason'],
      registers: [r],
    });
    this.forwardsRefused = new client.Counter({
      name: 'tether_forwards_refused_total',
      help: 'Refused forward requests by code',
      labelNames: ['code'],
      registers: [r],
    });
    this.sessionsOpened = new client.Counter({
      name: 'tether_sessions_opened_total',
      help: 'SSH sessions opened',
      registers: [r],
    });
    live.on(
      'connection',
      (e: { type: string; forward: { tenant: string }; bytesIn?: number; bytesOut?: number }) => {
        if (e.type === 'opened') this.connectionsOpened.inc({ tenant: e.forward.tenant });
        else {
          this.bytes.inc({ tenant: e.forward.tenant, direction: 'in' }, e.bytesIn ?? 0);
          this.bytes.inc({ tenant: e.forward.tenant, direction: 'out' }, e.bytesOut ?? 0);
        }
      },
    );
    live.on('session', (e: { type: string }) => {
      if (e.type === 'opened') this.sessionsOpened.inc();
    });
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
