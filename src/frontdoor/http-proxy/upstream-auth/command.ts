import { spawn } from 'node:child_process';
import type { Clock } from '../../../core/clock.js';
import type { Logger } from '../../../log/index.js';
import {
  credentialInvalid,
  credentialUnavailable,
  type SecretCheck,
  type SecretProvider,
  type SecretShare,
} from './types.js';

/** Runs a command and resolves with its trimmed stdout; rejects with a readable reason. */
export type CommandRunner = (
  argv: readonly string[],
  timeoutMs: number,
  signal: AbortSignal,
) => Promise<string>;

const MAX_OUTPUT = 64 * 1024;

export const runCommand: CommandRunner = (argv, timeoutMs, signal) =>
  new Promise((resolve, reject) => {
    const [cmd, ...args] = argv as [string, ...string[]];
    const p = spawn(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      signal,
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
    });
    let out = '';
    let err = '';
    let tooBig = false;
    p.stdout.on('data', (c: Buffer) => {
      if (out.length + c.length > MAX_OUTPUT) {
        tooBig = true;
        p.kill('SIGKILL');
      } else out += c.toString('utf8');
    });
    p.stderr.on('data', (c: Buffer) => {
      if (err.length < 4096) err += c.toString('utf8');
    });
    p.on('error', (e: NodeJS.ErrnoException) =>
      reject(new Error(e.code === 'ENOENT' ? `${cmd}: command not found` : e.message)),
    );
    p.on('close', (code, sig) => {
      if (tooBig) return reject(new Error(`output larger than ${MAX_OUTPUT} bytes`));
      if (sig)
        return reject(new Error(sig === 'SIGKILL' ? `killed after ${timeoutMs} ms` : `killed by ${sig}`));
      if (code !== 0) {
        const line = err.trim().split('\n')[0]?.slice(0, 200) ?? '';
        return reject(new Error(`exited with ${code}${line ? `: ${line}` : ''}`));
      }
      const v = out.trim();
      if (v === '') return reject(new Error('printed nothing'));
      resolve(v);
    });
  });

export interface CommandSecretOptions {
  argv: readonly string[];
  /** Time between runs. */
  refresh: number;
  /** Extra attempts per run, `retryDelay × 2^i` apart. */
  retries: number;
  retryDelay: number;
  timeout: number;
}

/**
 * A credential printed by a command (e.g. `aws ecr get-login-password`), re-run every
 * `refresh`. A failed run is retried; when every attempt fails the last good value stays in
 * use and the next run comes sooner (min(refresh, 5 min)). The value is never logged.
 */
export class CommandSecret implements SecretProvider {
  private value: string | undefined;
  private lastError: string | undefined;
  /** Why the last output cannot be used (the route answers 502 until a run prints a good value). */
  private invalid: string | undefined;
  private timer: unknown;
  private stopped = false;
  /** A run (with its retries) is going on. */
  private running = false;
  /** When the value in use was printed (ms): the newest wins, here or in another worker. */
  private valueAt = Number.NEGATIVE_INFINITY;
  private unsubscribe?: () => void;
  private readonly abort = new AbortController();
  /** Completed runs (success or failure after every retry); tests wait on it. */
  runs = 0;

  constructor(
    private readonly opts: CommandSecretOptions,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly runner: CommandRunner = runCommand,
    private readonly check?: SecretCheck,
    private readonly share?: SecretShare,
  ) {}

  current(): string {
    if (this.invalid !== undefined) throw credentialInvalid(`command output: ${this.invalid}`);
    if (this.value === undefined)
      throw credentialUnavailable(
        `the command has not succeeded yet${this.lastError ? `: ${this.lastError}` : ''}`,
      );
    return this.value;
  }

  /** Resolves after the first attempt (the retries, if needed, go on in the background). */
  start(): Promise<void> {
    this.unsubscribe = this.share?.onValue((value, at) => {
      if (at <= this.valueAt) return;
      // another worker's run printed a newer value: use it, and run again a little after that
      // worker's next run (whose value then comes here first): one run per refresh, not one
      // per worker
      this.value = value;
      this.valueAt = at;
      this.invalid = undefined;
      this.lastError = undefined;
      if (this.running || this.stopped) return;
      if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
      const after = this.opts.refresh + Math.min(60_000, this.opts.refresh / 10);
      this.timer = this.clock.setTimeout(() => void this.cycle(), after);
    });
    return new Promise((resolve) => {
      void this.cycle(resolve);
    });
  }

  stop(): void {
    this.unsubscribe?.();
    this.stopped = true;
    this.abort.abort();
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((r) => {
      this.timer = this.clock.setTimeout(r, ms);
    });
  }

  private async cycle(afterFirstAttempt?: () => void): Promise<void> {
    this.running = true;
    try {
      await this.run(afterFirstAttempt);
    } finally {
      this.running = false;
    }
  }

  private async run(afterFirstAttempt?: () => void): Promise<void> {
    const name =
      this.opts.argv[0] === '/bin/sh' ? (this.opts.argv[2] ?? '').split(/\s/)[0] : this.opts.argv[0];
    let ok = false;
    for (let attempt = 0; attempt <= this.opts.retries && !this.stopped; attempt++) {
      try {
        const v = await this.runner(this.opts.argv, this.opts.timeout, this.abort.signal);
        if (this.stopped) break;
        const invalid = this.check?.(v);
        if (invalid !== undefined) {
          this.value = undefined;
          this.invalid = invalid;
          this.lastError = invalid;
          this.log.error(
            { event: 'http_proxy.credential_command.invalid', command: name, reason: invalid },
            `upstream credential command ${name} printed a value that cannot be used: ${invalid}; requests get 502 until it prints a valid one`,
          );
          afterFirstAttempt?.();
          afterFirstAttempt = undefined;
          break;
        }
        this.invalid = undefined;
        const changed = v !== this.value;
        this.value = v;
        this.valueAt = this.clock.now();
        this.lastError = undefined;
        ok = true;
        this.share?.publish(v, this.valueAt);
        this.log.info(
          { event: 'http_proxy.credential_command.ok', command: name, changed },
          `upstream credential refreshed by ${name}`,
        );
        afterFirstAttempt?.();
        afterFirstAttempt = undefined;
        break;
      } catch (e) {
        if (this.stopped) break;
        this.lastError = (e as Error).message;
        this.log.warn(
          {
            event: 'http_proxy.credential_command.failed',
            command: name,
            attempt: attempt + 1,
            of: this.opts.retries + 1,
            reason: this.lastError,
          },
          `upstream credential command ${name} failed (attempt ${attempt + 1} of ${this.opts.retries + 1}): ${this.lastError}`,
        );
        afterFirstAttempt?.();
        afterFirstAttempt = undefined;
        if (attempt < this.opts.retries) await this.sleep(this.opts.retryDelay * 2 ** attempt);
      }
    }
    if (this.stopped) return;
    this.runs++;
    if (!ok) {
      this.log.error(
        {
          event: 'http_proxy.credential_command.gave_up',
          command: name,
          has_value: this.value !== undefined,
        },
        this.value === undefined
          ? `upstream credential command ${name} failed every attempt; requests get 503 until it succeeds`
          : `upstream credential command ${name} failed every attempt; keeping the last good value`,
      );
    }
    const next = ok ? this.opts.refresh : Math.min(this.opts.refresh, 300_000);
    this.timer = this.clock.setTimeout(() => void this.cycle(), next);
  }
}
