import { writeSync } from 'node:fs';
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
    // The bindings are parsed back from pino's serialized form: only when a listener reads them
    // (the metrics never do; a lifecycle record per connection should not pay for it).
    let bound: Record<string, unknown> | undefined;
    const e: LogEvent = {
      level,
      levelName: pino.levels.labels[level] ?? 'info',
      time: Date.now(),
      get bindings() {
        bound ??= bindings();
        return bound;
      },
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
  // a terminal gets readable lines as they come; a pipe (journald, docker) gets JSON in batches
  const logger = pretty
    ? pino(base, prettyStream(pino.destination({ dest: opts.destination ?? 1, sync: true })))
    : pino(
        base,
        opts.destination === undefined
          ? batchedStdout()
          : pino.destination({ dest: opts.destination, sync: true }),
      );
  Object.defineProperty(logger, TAP, { value: tap });
  return logger;
}

/** Runs once when the process exits: one `exit` listener, however many loggers are built. */
const exitFlushes = new Set<() => void>();
function atExit(fn: () => void): void {
  if (exitFlushes.size === 0)
    process.once('exit', () => {
      for (const f of exitFlushes) f();
    });
  exitFlushes.add(fn);
}

/**
 * stdout, batched: the lines logged during one turn of the event loop leave in one synchronous
 * write at its end (or as soon as 8 KiB are waiting), instead of one system call per line; a
 * gateway opening thousands of connections a second logs two lines for each. Nothing waits on a
 * timer or a thread, and what is waiting is written when the process exits.
 */
function batchedStdout(): pino.DestinationStream & { flush(cb?: (err?: Error) => void): void } {
  let waiting = '';
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (waiting.length === 0) return;
    const out = waiting;
    waiting = '';
    writeFully(1, out);
  };
  atExit(flush);
  return {
    write(line: string) {
      waiting += line;
      if (waiting.length >= 8 * 1024) flush();
      else if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    },
    flush(cb) {
      flush();
      cb?.();
    },
  };
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Writes all of `text` to `fd`, waiting out a full pipe (EAGAIN); when stdout is gone (EPIPE, a
 * closed fd) the lines are dropped: the log must never end the process.
 */
function writeFully(fd: number, text: string): void {
  let buf = Buffer.from(text);
  for (let tries = 0; buf.length > 0 && tries < 1000; ) {
    try {
      buf = buf.subarray(writeSync(fd, buf));
      tries = 0;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EAGAIN' && code !== 'EBUSY') return;
      tries++;
      Atomics.wait(pause, 0, 0, 10);
    }
  }
}

/**
 * A child of `log` without the redaction pass, for records whose fields the caller builds itself
 * from a fixed set of names, none of them (nor anything under them) a path of `REDACT_PATHS`,
 * with values that are strings and numbers: the connection lifecycle records, two per
 * connection. pino's redaction visits every field of every record (the wildcard paths) and was
 * more than half the cost of such a line. Anything else logs through `log` itself.
 */
export function withoutRedaction(log: Logger): Logger {
  // (a stand-in logger of a unit test, without child(), is used as it is)
  return typeof log.child === 'function' ? log.child({}, { redact: [] }) : log;
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
