import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { configProblem, FakeClock } from '../../test/helpers/core.js';
import { waitFor } from '../../test/helpers/util.js';
import { connectConfigFromText, type RepositoryConfig } from '../config/connect.js';
import { generateKeyPair } from '../core/ssh-keys.js';
import { silentLogger } from '../log/index.js';
import type { TunnelSession } from '../tunnel/client.js';
import type { ConnectorMessage } from '../tunnel/control-protocol.js';
import { dialDestination } from '../tunnel/dial.js';
import { HealthChecks, probe } from './health.js';
import { Connector } from './supervisor.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-health-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const keyFile = join(dir, 'key');
writeFileSync(keyFile, generateKeyPair().privateKey, { mode: 0o600 });

function load(yaml: string) {
  return connectConfigFromText(
    `gateway: "gw:2222"\ntenant: acme\nssh_key: "${keyFile}"\n${yaml}`,
    join(dir, 'connect.yaml'),
    {},
  );
}

function problems(yaml: string): string {
  return configProblem(() => load(yaml));
}

describe('connect.yaml health_check', () => {
  test('global and per repository; http falls back to tcp where the repository is not HTTP; false turns it off', () => {
    const cfg = load(
      [
        'health_check: { http: /health, interval: 5s }',
        'repositories:',
        '  g:',
        '    web: "http://intranet:8080"',
        '    share: "smb://files"',
        '    db: { uri: "tcp://db:5432", health_check: { tcp: true, interval: 1s, timeout: 500ms } }',
        '    plain: { uri: "http://other", health_check: false }',
        '',
      ].join('\n'),
    );
    const by = new Map(cfg.repositories.map((r) => [r.name, r.healthCheck]));
    assert.deepEqual(by.get('web'), { kind: 'http', path: '/health', interval: 5000, timeout: 2000 });
    assert.deepEqual(by.get('share'), { kind: 'tcp', path: null, interval: 5000, timeout: 2000 });
    assert.deepEqual(by.get('db'), { kind: 'tcp', path: null, interval: 1000, timeout: 500 });
    assert.equal(by.get('plain'), undefined);
    const none = load('repositories:\n  g:\n    web: "http://intranet"\n');
    assert.equal(none.repositories[0]!.healthCheck, undefined);
  });

  test('bad health checks are named by their path', () => {
    assert.match(
      problems('health_check: { tcp: true, http: /x }\nrepositories: {}\n'),
      /health_check: give one of "tcp: true" or "http: \/path"/,
    );
    assert.match(
      problems('health_check: { http: health }\n'),
      /health_check.http: use a request path such as \/health/,
    );
    assert.match(problems('health_check: { tcp: yes }\n'), /health_check.tcp: use "tcp: true"/);
    assert.match(
      problems('health_check: { tcp: true, interval: soon }\n'),
      /health_check.interval: "soon" is not a duration/,
    );
    assert.match(
      problems('health_check: { tcp: true, interval: 1s, timeout: 5s }\n'),
      /health_check: needs 100ms <= interval and 10ms <= timeout <= interval/,
    );
    assert.match(problems('health_check: { tcp: true, every: 1s }\n'), /health_check.every: unknown key/);
    assert.match(
      problems('repositories:\n  g:\n    s: { uri: "smb://files", health_check: { http: /x } }\n'),
      /repositories.g.s.health_check.http: a smb repository does not speak HTTP: use "tcp: true"/,
    );
    assert.match(
      problems('repositories:\n  g:\n    s: { health_check: { tcp: true } }\n'),
      /repositories.g.s: needs uri/,
    );
    assert.match(
      problems('repositories:\n  g:\n    s: { uri: "smb://files", check: 1 }\n'),
      /repositories.g.s: unknown key "check" \(a repository takes uri, health_check and proxy_protocol\)/,
    );
    assert.match(
      problems('repositories:\n  g:\n    s: { uri: "http://files:80", proxy_protocol: v3 }\n'),
      /repositories.g.s.proxy_protocol: use v1 or v2 \(the PROXY protocol version the destination reads\), not "v3"/,
    );
  });
});

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return (server.address() as AddressInfo).port;
}

function repo(port: number, hc: RepositoryConfig['healthCheck'], service = 'http'): RepositoryConfig {
  return {
    label: 'g/web',
    group: 'g',
    name: 'web',
    uri: `${service}://127.0.0.1:${port}`,
    service,
    scheme: null,
    host: '127.0.0.1',
    port,
    path: null,
    healthCheck: hc,
  };
}

describe('probe', () => {
  test('tcp: a listening port passes, a closed one fails', async () => {
    const srv = net.createServer((s) => s.end());
    const port = await listen(srv);
    const hc = { kind: 'tcp' as const, path: null, interval: 5000, timeout: 5000 };
    await probe(repo(port, hc, 'tcp'), hc, dialDestination);
    srv.close();
    await assert.rejects(probe(repo(port, hc, 'tcp'), hc, dialDestination), /connection refused/);
  });

  test('http: 2xx and 3xx pass; 5xx, no answer in time and refused fail with the reason', async () => {
    let status = 200;
    let hang = false;
    const seen: string[] = [];
    const srv = http.createServer((req, res) => {
      seen.push(req.url ?? '');
      if (hang) return;
      res.writeHead(status);
      res.end();
    });
    const port = await listen(srv);
    // A generous timeout: on a busy machine a healthy answer may take a while; only the hung
    // case waits the whole of it.
    const hc = { kind: 'http' as const, path: '/health', interval: 2000, timeout: 2000 };
    await probe(repo(port, hc), hc, dialDestination);
    status = 302;
    await probe(repo(port, hc), hc, dialDestination);
    status = 503;
    await assert.rejects(probe(repo(port, hc), hc, dialDestination), /HTTP 503 from \/health/);
    hang = true;
    await assert.rejects(probe(repo(port, hc), hc, dialDestination), /no answer within 2000 ms/);
    assert.deepEqual(seen, ['/health', '/health', '/health', '/health']);
    srv.closeAllConnections();
    srv.close();
    await assert.rejects(probe(repo(port, hc), hc, dialDestination), /connection refused/);
  });

  test('http: a destination that resets the connection is named as such, not by its error code', async () => {
    const srv = net.createServer((s) => s.resetAndDestroy());
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (srv.address() as net.AddressInfo).port;
      const hc = { kind: 'http' as const, path: '/health', interval: 2000, timeout: 2000 };
      await assert.rejects(probe(repo(port, hc), hc, dialDestination), /^Error: connection reset$/);
    } finally {
      srv.close();
    }
  });
});

describe('HealthChecks', () => {
  test('checks at once, then every interval; a change restarts it; remove stops it', async () => {
    const clock = new FakeClock();
    const results: Array<[string, boolean, string | null]> = [];
    let healthy = true;
    let probes = 0;
    const checks = new HealthChecks({
      clock,
      dial: dialDestination,
      onResult: (l, ok, why) => results.push([l, ok, why]),
      probe: async () => {
        probes++;
        if (!healthy) throw new Error('HTTP 503 from /health');
      },
    });
    const hc = { kind: 'http' as const, path: '/health', interval: 1000, timeout: 100 };
    checks.set(repo(1, hc));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(results, [['g/web', true, null]]);
    healthy = false;
    clock.advance(1000);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(results.at(-1), ['g/web', false, 'HTTP 503 from /health']);
    checks.set(repo(1, hc));
    assert.equal(probes, 2, 'the same check is not restarted');
    checks.set(repo(1, { ...hc, interval: 2000 }));
    await new Promise((r) => setImmediate(r));
    assert.equal(probes, 3, 'a changed check starts over at once');
    checks.remove('g/web');
    clock.advance(10_000);
    await new Promise((r) => setImmediate(r));
    assert.equal(probes, 3);
    assert.equal(checks.has('g/web'), false);
  });
});

class FakeSession extends EventEmitter {
  sent: ConnectorMessage[] = [];
  hostFingerprint = 'SHA256:fake';
  welcome = { type: 'welcome' as const, tenant: 'acme', quota: 2, gateway: 'test' };
  isOpen = true;
  send(m: ConnectorMessage): void {
    this.sent.push(m);
  }
  forward(): Promise<number> {
    return Promise.resolve(30_000);
  }
  unforward(): Promise<void> {
    return Promise.resolve();
  }
  close(): void {
    this.isOpen = false;
    this.emit('close', undefined);
  }
}

test('the connector withdraws a repository whose health check fails and restores it when it passes', async () => {
  let status = 200;
  const srv = http.createServer((_req, res) => {
    res.writeHead(status);
    res.end();
  });
  const port = await listen(srv);
  const cfg = load(
    `repositories:\n  g:\n    web: { uri: "http://127.0.0.1:${port}", health_check: { http: /health, interval: 10s, timeout: 10s } }\n`,
  );
  const clock = new FakeClock();
  const session = new FakeSession();
  const c = new Connector({
    config: cfg,
    logger: silentLogger(),
    agent: 'test',
    clock,
    openSession: async () => session as unknown as TunnelSession,
  });
  c.start();
  const until = (what: string, ok: () => boolean) => waitFor(ok, { what, timeout: 30_000, interval: 5 });
  // The next check is armed only when the one in flight has answered (which takes real time on a
  // busy machine): move the fake clock on until the expected message is out, not once.
  const advanceUntil = (what: string, ok: () => boolean) =>
    waitFor(
      () => {
        if (ok()) return true;
        clock.advance(10_000);
        return false;
      },
      { what, timeout: 30_000, interval: 20 },
    );
  try {
    await until('active', () => c.status().repositories[0]?.state === 'active');
    status = 503;
    await advanceUntil('withdrawn', () => session.sent.some((m) => m.type === 'withdraw'));
    const st = c.status().repositories[0]!;
    assert.equal(st.state, 'unreachable');
    assert.equal(st.reason, `health check failed: 127.0.0.1:${port}: HTTP 503 from /health`);
    assert.deepEqual(
      session.sent.find((m) => m.type === 'withdraw'),
      {
        type: 'withdraw',
        label: 'g/web',
        reason: st.reason,
      },
    );
    status = 200;
    await advanceUntil('restored', () => session.sent.some((m) => m.type === 'restore'));
    assert.equal(c.status().repositories[0]!.state, 'active');
  } finally {
    await c.stop();
    srv.close();
  }
});
