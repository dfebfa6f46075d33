import pino, { type Logger } from 'pino';

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
];

export interface LoggerOptions {
  level?: LogLevel;
  /** Pretty output for humans; defaults to "stdout is a TTY". */
  pretty?: boolean;
  /** Write to this destination (fd or path) instead of stdout. */
  destination?: number | string;
  name?: string;
}

/** One logger per process, built in the composition root and passed down. */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? (process.env.TETHER_LOG_LEVEL as LogLevel | undefined) ?? 'info';
  const pretty = opts.pretty ?? (opts.destination === undefined && process.stdout.isTTY === true);
  const base = {
    level,
    name: opts.name,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (pretty) {
    return pino({
      ...base,
      transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l' } },
    });
  }
  const dest = pino.destination({ dest: opts.destination ?? 1, sync: true });
  return pino(base, dest);
}

/** A logger that drops everything (unit tests). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
