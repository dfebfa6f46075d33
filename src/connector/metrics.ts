import http from 'node:http';
import type { AddressInfo } from 'node:net';
import client from 'prom-client';
import { BoundedLabels } from '../core/bounded-labels.js';
import type { ConnectorStatus } from './status.js';

/** What the connector metrics read: the connector's own status and its session events. */
export interface ConnectorMetricsSource {
  status(): ConnectorStatus;
  on(event: 'connected' | 'disconnected', listener: () => void): unknown;
  off?(event: 'connected' | 'disconnected', listener: () => void): unknown;
}

export interface ConnectorMetrics {
  readonly registry: client.Registry;
  render(): Promise<{ contentType: string; body: string }>;
  /** Serves GET /metrics on host:port (0 = any free port), e.g. `metrics_listen: 127.0.0.1:9464`. */
  listen(host: string, port: number): Promise<AddressInfo>;
  close(): Promise<void>;
}

const REPO_STATES = ['pending', 'active', 'rejected', 'unreachable'] as const;

/**
 * Prometheus metrics of one connector, read from `connector.status()` when scraped, plus
 * session counters from its `connected` / `disconnected` events. To wire it:
 *
 *   const m = createConnectorMetrics(connector);
 *   await m.listen('127.0.0.1', 9464);   // stop: await m.close()
 */
export function createConnectorMetrics(
  source: ConnectorMetricsSource,
  opts: { maxRepositories?: number } = {},
): ConnectorMetrics {
  const r = new client.Registry();
  const repos = new BoundedLabels(opts.maxRepositories ?? 500);
  client.collectDefaultMetrics({ register: r, prefix: 'tether_connector_' });
  let status: ConnectorStatus | undefined;
  let statusAt = 0;
  /** One status per scrape (every collect() asks). */
  const snapshot = (): ConnectorStatus => {
    if (!status || Date.now() - statusAt > 100) {
      status = source.status();
      statusAt = Date.now();
    }
    return status;
  };

  new client.Gauge({
    name: 'tether_connector_connected',
    help: '1 while the SSH session with the gateway is up',
    registers: [r],
    collect() {
      this.set(snapshot().connected ? 1 : 0);
    },
  });
  new client.Gauge({
    name: 'tether_connector_quota',
    help: 'Forwards the gateway allows this tenant at once (-1 until it said)',
    registers: [r],
    collect() {
      this.set(snapshot().quota ?? -1);
    },
  });
  new client.Gauge({
    name: 'tether_connector_repositories',
    help: 'Repositories by state: pending, active (forwarded), rejected (by the gateway), unreachable (destination down)',
    labelNames: ['state'],
    registers: [r],
    collect() {
      const counts = new Map<string, number>(REPO_STATES.map((s) => [s, 0]));
      for (const repo of snapshot().repositories) counts.set(repo.state, (counts.get(repo.state) ?? 0) + 1);
      for (const [state, n] of counts) this.set({ state }, n);
    },
  });
  new client.Gauge({
    name: 'tether_connector_connections_active',
    help: 'Connections open right now, by repository',
    labelNames: ['repository'],
    registers: [r],
    collect() {
      this.reset();
      for (const repo of snapshot().repositories)
        this.inc({ repository: repos.get(repo.label) }, repo.connections);
    },
  });
  // Totals the connector keeps itself: copied into counters when scraped.
  new client.Counter({
    name: 'tether_connector_connections_total',
    help: 'Connections relayed, by repository',
    labelNames: ['repository'],
    registers: [r],
    collect() {
      this.reset();
      for (const repo of snapshot().repositories)
        this.inc({ repository: repos.get(repo.label) }, repo.totalConnections);
    },
  });
  new client.Counter({
    name: 'tether_connector_bytes_total',
    help: 'Bytes relayed, by repository; direction "in" is from the gateway to the destination, "out" back',
    labelNames: ['repository', 'direction'],
    registers: [r],
    collect() {
      this.reset();
      for (const repo of snapshot().repositories) {
        const repository = repos.get(repo.label);
        this.inc({ repository, direction: 'in' }, repo.bytesIn);
        this.inc({ repository, direction: 'out' }, repo.bytesOut);
      }
    },
  });
  new client.Counter({
    name: 'tether_connector_dial_failures_total',
    help: 'Connections from the gateway that the destination did not accept, by repository',
    labelNames: ['repository'],
    registers: [r],
    collect() {
      this.reset();
      for (const repo of snapshot().repositories)
        this.inc({ repository: repos.get(repo.label) }, repo.dialFailures);
    },
  });
  const sessions = new client.Counter({
    name: 'tether_connector_sessions_total',
    help: 'SSH sessions established with the gateway',
    registers: [r],
  });
  const reconnects = new client.Counter({
    name: 'tether_connector_reconnects_total',
    help: 'Sessions established again after one was lost',
    registers: [r],
  });
  const disconnects = new client.Counter({
    name: 'tether_connector_disconnects_total',
    help: 'Sessions lost',
    registers: [r],
  });
  let everConnected = false;
  const onConnected = () => {
    sessions.inc();
    if (everConnected) reconnects.inc();
    everConnected = true;
  };
  const onDisconnected = () => disconnects.inc();
  source.on('connected', onConnected);
  source.on('disconnected', onDisconnected);

  const render = async () => {
    status = undefined;
    return { contentType: r.contentType, body: await r.metrics() };
  };
  let server: http.Server | undefined;
  return {
    registry: r,
    render,
    async listen(host, port) {
      server = http.createServer((req, res) => {
        if (req.method !== 'GET' || new URL(req.url ?? '/', 'http://x').pathname !== '/metrics') {
          res.writeHead(404, { 'content-type': 'text/plain' });
          res.end('only GET /metrics here\n');
          return;
        }
        render().then(
          (m) => {
            res.writeHead(200, { 'content-type': m.contentType });
            res.end(m.body);
          },
          () => {
            res.writeHead(500, { 'content-type': 'text/plain' });
            res.end('metrics failed\n');
          },
        );
      });
      const srv = server;
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen({ host, port }, () => {
          srv.off('error', reject);
          resolve();
        });
      });
      return srv.address() as AddressInfo;
    },
    async close() {
      source.off?.('connected', onConnected);
      source.off?.('disconnected', onDisconnected);
      const srv = server;
      server = undefined;
      if (srv) {
        srv.closeAllConnections();
        await new Promise<void>((res) => srv.close(() => res()));
      }
    },
  };
}
