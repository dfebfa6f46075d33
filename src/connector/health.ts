/**
 * Health checks of repository destinations (`health_check:` in connect.yaml). Each checked
 * repository is probed every interval: a TCP connect, or an HTTP GET of a path that must
 * answer 2xx or 3xx within the timeout. The supervisor withdraws a repository from the
 * gateway when its check fails and restores it when it passes again, so the gateway sends
 * its connections to the other connectors of the same repository meanwhile.
 */
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { HealthCheckConfig, RepositoryConfig } from '../config/connect.js';
import type { Clock } from '../core/clock.js';
import { dialReason } from '../tunnel/dial.js';

export type Dial = (host: string, port: number, timeoutMs: number) => Promise<Socket>;

/** Whether a repository's destination speaks TLS for an HTTP check. */
function usesTls(r: RepositoryConfig): boolean {
  return r.service === 'https' || r.scheme === 'https';
}

/** One probe: resolves when healthy, rejects with a short reason ("HTTP 503", "connection refused"). */
export async function probe(r: RepositoryConfig, hc: HealthCheckConfig, dial: Dial): Promise<void> {
  if (hc.kind === 'tcp') {
    const sock = await dial(r.host, r.port, hc.timeout);
    sock.on('error', () => {});
    sock.end();
    sock.resume();
    setTimeout(() => sock.destroy(), 1000).unref();
    return;
  }
  const tls = usesTls(r);
  await new Promise<void>((resolve, reject) => {
    let settled = false;
    const done = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve();
    };
    const req = (tls ? https : http).request(
      {
        host: r.host,
        port: r.port,
        path: hc.path ?? '/',
        method: 'GET',
        agent: false,
        headers: { 'user-agent': 'tether-connector health check', connection: 'close' },
        // A health check asks "does it answer", not "is it who it says": no credentials are sent.
        ...(tls ? { rejectUnauthorized: false, servername: r.host } : {}),
      },
      (res) => {
        res.resume();
        const status = res.statusCode ?? 0;
        done(status >= 200 && status < 400 ? undefined : new Error(`HTTP ${status} from ${hc.path}`));
        req.destroy();
      },
    );
    const timer = setTimeout(() => {
      done(new Error(`no answer within ${hc.timeout} ms`));
      req.destroy();
    }, hc.timeout);
    req.on('error', (e: NodeJS.ErrnoException) => done(new Error(dialReason(e))));
    req.end();
  });
}

export interface HealthChecksDeps {
  clock: Clock;
  dial: Dial;
  /** A check passed (ok) or failed (with the reason). Called after every probe. */
  onResult(label: string, ok: boolean, reason: string | null): void;
  /** Replaces `probe` in tests. */
  probe?: typeof probe;
}

interface Running {
  repo: RepositoryConfig;
  timer: unknown;
  gen: number;
}

/** The checks of every repository that has one; `set` (re)starts, `remove` and `stop` end them. */
export class HealthChecks {
  private readonly running = new Map<string, Running>();
  private readonly probe: typeof probe;

  constructor(private readonly deps: HealthChecksDeps) {
    this.probe = deps.probe ?? probe;
  }

  /** Starts checking this repository (at once), restarts when its check or destination changed. */
  set(repo: RepositoryConfig): void {
    const cur = this.running.get(repo.label);
    if (!repo.healthCheck) {
      this.remove(repo.label);
      return;
    }
    if (cur && same(cur.repo, repo)) {
      cur.repo = repo;
      return;
    }
    this.remove(repo.label);
    const run: Running = { repo, timer: undefined, gen: 0 };
    this.running.set(repo.label, run);
    this.tick(run, run.gen);
  }

  remove(label: string): void {
    const cur = this.running.get(label);
    if (!cur) return;
    cur.gen++;
    if (cur.timer !== undefined) this.deps.clock.clearTimeout(cur.timer);
    this.running.delete(label);
  }

  stop(): void {
    for (const label of [...this.running.keys()]) this.remove(label);
  }

  has(label: string): boolean {
    return this.running.has(label);
  }

  private tick(run: Running, gen: number): void {
    const hc = run.repo.healthCheck!;
    this.probe(run.repo, hc, this.deps.dial).then(
      () => this.report(run, gen, true, null),
      (e: Error) => this.report(run, gen, false, e.message),
    );
  }

  private report(run: Running, gen: number, ok: boolean, reason: string | null): void {
    if (run.gen !== gen || this.running.get(run.repo.label) !== run) return;
    this.deps.onResult(run.repo.label, ok, reason);
    run.timer = this.deps.clock.setTimeout(() => {
      run.timer = undefined;
      this.tick(run, gen);
    }, run.repo.healthCheck!.interval);
  }
}

function same(a: RepositoryConfig, b: RepositoryConfig): boolean {
  const x = a.healthCheck;
  const y = b.healthCheck;
  return (
    a.host === b.host &&
    a.port === b.port &&
    a.service === b.service &&
    a.scheme === b.scheme &&
    x?.kind === y?.kind &&
    x?.path === y?.path &&
    x?.interval === y?.interval &&
    x?.timeout === y?.timeout
  );
}
