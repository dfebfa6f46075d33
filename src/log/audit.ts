import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { TetherError } from '../errors/index.js';
import { type LogEvent, REDACT_PATHS } from './index.js';

/**
 * The audit log: one JSON line per event record (tenant added, session opened, forward
 * refused, connection closed, front-door login…), to stdout, stderr, a file, or syslog
 * (RFC 5424, through syslog-client). The same secrets are redacted as in the main log.
 */
export interface AuditSink {
  write(e: LogEvent): void;
  /** Flushes and releases the destination. */
  close(): Promise<void>;
}

export type AuditTarget =
  | { kind: 'stdout' }
  | { kind: 'stderr' }
  | { kind: 'file'; path: string }
  | { kind: 'syslog'; transport: 'udp' | 'tcp'; host: string; port: number; facility: number };

const USAGE =
  'use "stdout", "stderr", "file:/path/to/audit.log", "syslog://host[:port]" (UDP) or "syslog+tcp://host[:port]"';

/** RFC 5424 facility codes accepted in `?facility=`. */
const FACILITIES: Record<string, number> = {
  user: 1,
  daemon: 3,
  auth: 4,
  authpriv: 10,
  local0: 16,
  local1: 17,
  local2: 18,
  local3: 19,
  local4: 20,
  local5: 21,
  local6: 22,
  local7: 23,
};

/** Parses an audit target; a string result is what is wrong with it. */
export function parseAuditTarget(spec: string): AuditTarget | string {
  const s = spec.trim();
  if (s === 'stdout' || s === 'stderr') return { kind: s };
  if (s.startsWith('file:')) {
    let path = s.slice(5);
    if (path.startsWith('//')) {
      try {
        path = fileURLToPath(s);
      } catch (e) {
        return `invalid file URL ${JSON.stringify(spec)}: ${(e as Error).message}`;
      }
    }
    if (path === '') return `audit file target ${JSON.stringify(spec)} has no path; ${USAGE}`;
    return { kind: 'file', path: resolve(path) };
  }
  const m = /^syslog(\+(udp|tcp))?:\/\//.exec(s);
  if (m) {
    let url: URL;
    try {
      url = new URL(s.replace(/^syslog(\+(udp|tcp))?:/, 'http:'));
    } catch {
      return `invalid syslog address ${JSON.stringify(spec)}; ${USAGE}`;
    }
    if (!url.hostname) return `syslog target ${JSON.stringify(spec)} has no host; ${USAGE}`;
    if ((url.pathname !== '/' && url.pathname !== '') || url.username || url.hash)
      return `syslog target ${JSON.stringify(spec)} takes only a host, a port and ?facility=`;
    const port = url.port === '' ? 514 : Number(url.port);
    let facility = FACILITIES.local0!;
    for (const [k, v] of url.searchParams) {
      if (k !== 'facility') return `unknown syslog option ${JSON.stringify(k)}; only "facility" is known`;
      const f = FACILITIES[v.toLowerCase()];
      if (f === undefined)
        return `unknown syslog facility ${JSON.stringify(v)}; use one of ${Object.keys(FACILITIES).join(', ')}`;
      facility = f;
    }
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    return { kind: 'syslog', transport: m[2] === 'tcp' ? 'tcp' : 'udp', host, port, facility };
  }
  return `unknown audit target ${JSON.stringify(spec)}; ${USAGE}`;
}

interface SyslogClient {
  log(message: string, options: Record<string, unknown>, cb: (err?: Error | null) => void): void;
  close(): void;
  on(event: 'error', fn: (err: Error) => void): void;
}
interface SyslogModule {
  createClient(target: string, options: Record<string, unknown>): SyslogClient;
  Transport: { Tcp: number; Udp: number };
}

/** syslog severity (RFC 5424) of a pino level name. */
function severityOf(level: string): number {
  switch (level) {
    case 'fatal':
      return 2;
    case 'error':
      return 3;
    case 'warn':
      return 4;
    case 'info':
      return 6;
    default:
      return 7;
  }
}

/** A pino destination that sends each line as one RFC 5424 message. */
function syslogDestination(t: Extract<AuditTarget, { kind: 'syslog' }>, onError: (err: Error) => void) {
  const syslog = createRequire(import.meta.url)('syslog-client') as SyslogModule;
  const client = syslog.createClient(t.host, {
    port: t.port,
    transport: t.transport === 'tcp' ? syslog.Transport.Tcp : syslog.Transport.Udp,
    rfc3164: false,
    appName: 'tether',
    facility: t.facility,
    syslogHostname: hostname(),
    tcpTimeout: 5_000,
  });
  client.on('error', onError);
  let pending = 0;
  let drained: (() => void) | undefined;
  return {
    write(line: string): boolean {
      const text = line.trimEnd();
      let level = 'info';
      let event = '-';
      try {
        const rec = JSON.parse(text) as { level?: string; event?: string };
        level = rec.level ?? level;
        // MSGID: 1-32 printable US-ASCII characters.
        event = (rec.event ?? '-').replace(/[^\x21-\x7e]/g, '_').slice(0, 32) || '-';
      } catch {
        // Not JSON: send as is.
      }
      pending++;
      client.log(text, { severity: severityOf(level), msgid: event }, (err) => {
        if (err) onError(err);
        if (--pending === 0) drained?.();
      });
      return true;
    },
    async close(): Promise<void> {
      if (pending > 0) {
        await new Promise<void>((r) => {
          drained = r;
          setTimeout(r, 2_000).unref();
        });
      }
      client.close();
    },
  };
}

/** Builds the sink for a target ("stdout", "file:/path", "syslog://host:514", …). */
export function createAuditSink(spec: string | AuditTarget): AuditSink {
  const target = typeof spec === 'string' ? parseAuditTarget(spec) : spec;
  if (typeof target === 'string') throw new TetherError('CONFIG_INVALID', target, { status: 400 });
  let lastError = 0;
  const onError = (err: Error) => {
    // Say it at most once a minute: an unreachable syslog must not flood stderr.
    if (Date.now() - lastError < 60_000) return;
    lastError = Date.now();
    process.stderr.write(`tether: audit log: ${err.message}\n`);
  };
  let dest: { write(s: string): unknown; flushSync?: () => void; end?: () => void };
  let close: () => Promise<void>;
  if (target.kind === 'syslog') {
    const d = syslogDestination(target, onError);
    dest = d;
    close = () => d.close();
  } else {
    let d: ReturnType<typeof pino.destination>;
    try {
      d = pino.destination({
        dest: target.kind === 'file' ? target.path : target.kind === 'stdout' ? 1 : 2,
        sync: true,
        append: true,
        mkdir: target.kind === 'file',
        // the audit trail names callers, tenants and addresses: owner-only when we create it
        ...(target.kind === 'file' ? { mode: 0o600 } : {}),
      });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      throw new TetherError(
        'AUDIT_LOG_UNWRITABLE',
        `cannot open the audit log ${target.kind === 'file' ? `file ${target.path}` : target.kind}: ${code}`,
        {
          status: 400,
          cause: e,
        },
      );
    }
    d.on('error', onError);
    dest = d;
    close = async () => {
      if (target.kind === 'file') d.end();
    };
  }
  const out = pino(
    {
      level: 'trace',
      base: undefined,
      messageKey: 'msg',
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: () => `,"time":"${new Date().toISOString()}"`,
      formatters: { level: (label) => ({ level: label }) },
    },
    dest as pino.DestinationStream,
  );
  return {
    write(e: LogEvent) {
      const rec = { audit: true, ...e.bindings, ...e.fields };
      const method = (out as unknown as Record<string, (o: unknown, m?: string) => void>)[e.levelName];
      (method ?? out.info).call(out, rec, e.msg);
    },
    close,
  };
}
