import { createRequire } from 'node:module';
import pino, { type DestinationStream, type Logger } from 'pino';
import { type AuditSink, createAuditSink } from './audit.js';

export type { Logger } from 'pino';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';

/** Paths pino censors wherever they appear in a log record. */
export const REDACT_PATHS = [
  'privateKey',
  'private_key',
  '*.privateKey',
  '*.private_key',
  'token',
  '*.token',
  'password',
  '*.password',
  'groupKey',
  '*.groupKey',
  'group_key',
  '*.group_key',
  'secret',
  '*.secret',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'headers["proxy-authorization"]',
  'headers.cookie',
  '*.headers.authorization',
  '*.headers["proxy-authorization"]',
  '*.headers.cookie',
  '["proxy-authorization"]',
  '*["proxy-authorization"]',
  'proxyAuthorization',
  '*.proxyAuthorization',
];

/**
 * A caller-supplied URL or authority with its userinfo replaced: `acme:KEY@web.grp.acme:443` →
 * `[redacted]@web.grp.acme:443`, `http://u:p@host/x` → `http://[redacted]@host/x`. Everything a
 * front door logs of a target goes through this first: the userinfo of a proxy URL is a credential.
 */
export function withoutUserinfo(target: string): string {
  return target.replace(/^([a-z][a-z0-9+.-]*:\/\/)?[^/?#]*@/i, '$1[redacted]@');
}

export interface LoggerOptions {
  level?: LogLevel;
  /** Pretty output for humans; defaults to "stdout is a TTY". */
  pretty?: boolean;
  /** Write to this destination (fd or path) instead of stdout. */
  destination?: number | string;
  name?: string;
  /**
   * Audit log: every record with an `event` field is also written here, whatever the level
   * (a target such as "stdout", "file:/var/log/tether/audit.log", "syslog://host:514", or a sink).
   */
  audit?: string | AuditSink;
}

/** A structured log record with an `event` field, as observers (audit, metrics) see it. */
export interface LogEvent {
  /** pino's numeric level (30 = info). */
  level: number;
  levelName: string;
  time: number;
  /** The fields of the logger's children (tenant, session, component…). */
  bindings: Record<string, unknown>;
  /** The record's own fields; `event` names what happened. */
  fields: Record<string, unknown> & { event: string };
  msg?: string;
}

type LogEventListener = (e: LogEvent) => void;

const TAP = Symbol.for('tether.log.events');

/** Fans event records out to listeners; one per root logger, reached from every child. */
class EventTap {
  readonly listeners = new Set<LogEventListener>();

  emit(
    level: number,
    bindings: () => Record<string, unknown>,
    fields: LogEvent['fields'],
    msg?: string,
  ): void {
    const e: LogEvent = {
      level,
      levelName: pino.levels.labels[level] ?? 'info',
      time: Date.now(),
      bindings: bindings(),
      fields,
      msg,
    };
    for (const fn of this.listeners) {
      try {
        fn(e);
      } catch {
        // An observer must never break the code that logs.
      }
    }
  }
}

/**
 * Calls `fn` for every record with an `event` field logged through `log` or its children, at
 * info level and above even when the configured level hides them. Returns an unsubscribe
 * function. Loggers not built by createLogger (silentLogger) have no events to observe.
 */
export function onLogEvents(log: Logger, fn: LogEventListener): () => void {
  const tap = (log as unknown as { [TAP]?: EventTap })[TAP];
  if (!tap) return () => {};
  tap.listeners.add(fn);
  return () => tap.listeners.delete(fn);
}

const LEVEL_VALUES: Record<LogLevel, number> = {
  ...pino.levels.values,
  silent: Number.POSITIVE_INFINITY,
} as Record<LogLevel, number>;

/** One logger per process, built in the composition root and passed down. */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? (process.env.TETHER_LOG_LEVEL as LogLevel | undefined) ?? 'info';
  const pretty = opts.pretty ?? (opts.destination === undefined && process.stdout.isTTY === true);
  // Event records (the audit trail, metrics) are seen at info level and above whatever the
  // configured level; the configured level is then applied to the output in the hook.
  const threshold = LEVEL_VALUES[level] ?? LEVEL_VALUES.info;
  const tap = new EventTap();
  const audit = typeof opts.audit === 'string' ? createAuditSink(opts.audit) : opts.audit;
  if (audit) tap.listeners.add((e) => audit.write(e));
  const base = {
    level: threshold > LEVEL_VALUES.info ? 'info' : level,
    name: opts.name,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    hooks: {
      logMethod(this: Logger, args: unknown[], method: (...a: unknown[]) => void, lvl: number) {
        const first = args[0];
        if (
          tap.listeners.size > 0 &&
          first !== null &&
          typeof first === 'object' &&
          typeof (first as { event?: unknown }).event === 'string'
        ) {
          tap.emit(
            lvl,
            () => this.bindings(),
            first as LogEvent['fields'],
            typeof args[1] === 'string' ? args[1] : undefined,
          );
        }
        if (lvl >= threshold) method.apply(this, args);
      },
    },
  };
  const dest = pino.destination({ dest: opts.destination ?? 1, sync: true });
  const logger = pino(base, pretty ? prettyStream(dest) : dest);
  Object.defineProperty(logger, TAP, { value: tap });
  return logger;
}

/**
 * Human-readable lines for a terminal, formatted in this thread as each record is written. (A
 * pino transport would run pino-pretty in a worker thread: a second V8 isolate, about 10 MiB for
 * the life of the process.) pino-pretty is loaded only here, when the output is a terminal.
 */
function prettyStream(dest: DestinationStream): DestinationStream {
  const { prettyFactory } = createRequire(import.meta.url)('pino-pretty') as {
    prettyFactory(o: { colorize: boolean; translateTime: string }): (line: string) => string;
  };
  const format = prettyFactory({ colorize: true, translateTime: 'SYS:HH:MM:ss.l' });
  return { write: (line: string) => dest.write(format(line)) };
}

/** A logger that drops everything (unit tests). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
