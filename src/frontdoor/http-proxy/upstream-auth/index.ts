import type { SecretSource, UpstreamAuth } from '../../../config/http-proxy.js';
import type { Clock } from '../../../core/clock.js';
import type { Logger } from '../../../log/index.js';
import { type CommandRunner, CommandSecret } from './command.js';
import { FileSecret } from './file.js';
import { StaticSecret } from './static.js';
import {
  credentialInvalid,
  headerValueProblem,
  type SecretCheck,
  type SecretProvider,
  type SecretShare,
} from './types.js';

export function secretProvider(
  src: SecretSource,
  clock: Clock,
  log: Logger,
  runner?: CommandRunner,
  check?: SecretCheck,
  share?: SecretShare,
): SecretProvider {
  switch (src.kind) {
    case 'static':
      return new StaticSecret(src.value, check);
    case 'file':
      return new FileSecret(src.path, log, check, share);
    default:
      return new CommandSecret(
        {
          argv: src.argv,
          refresh: src.refresh,
          retries: src.retries,
          retryDelay: src.retry_delay,
          timeout: src.timeout,
        },
        clock,
        log,
        runner,
        check,
        share,
      );
  }
}

/** The check a route's credential source applies when it reads a value: the header it makes must be valid. */
export function credentialCheck(cfg: UpstreamAuth): SecretCheck {
  // Basic sends base64 (always a valid header value); the line-break rule keeps a value read from a file one line.
  if (cfg.type === 'basic')
    return (v) => (/[\r\n\0]/.test(v) ? 'it contains a line break or NUL' : undefined);
  return (v) => (/[\r\n\0]/.test(v) ? 'it contains a line break or NUL' : headerValueProblem(v));
}

/** The header a route adds to every upstream request (after the caller's credentials were removed). */
export class UpstreamCredential {
  readonly headerName: string;
  private lastSecret: string | undefined;
  private lastValue = '';
  private bad: string | undefined;

  constructor(
    private readonly cfg: UpstreamAuth,
    readonly provider: SecretProvider,
  ) {
    this.headerName = cfg.type === 'header' ? cfg.name : 'authorization';
  }

  /** The header value now; throws a 503 TetherError when the credential is not available. */
  value(): string {
    const secret = this.provider.current();
    if (secret !== this.lastSecret) {
      this.lastValue =
        this.cfg.type === 'basic'
          ? `Basic ${Buffer.from(`${this.cfg.username}:${secret}`).toString('base64')}`
          : this.cfg.type === 'bearer'
            ? `Bearer ${secret}`
            : secret;
      this.lastSecret = secret;
      this.bad = credentialCheck(this.cfg)(secret);
    }
    if (this.bad !== undefined) throw credentialInvalid(this.bad);
    return this.lastValue;
  }

  start(): Promise<void> {
    return this.provider.start();
  }

  stop(): void {
    this.provider.stop();
  }
}

export function upstreamCredential(
  cfg: UpstreamAuth,
  clock: Clock,
  log: Logger,
  runner?: CommandRunner,
  share?: SecretShare,
): UpstreamCredential {
  return new UpstreamCredential(
    cfg,
    secretProvider(cfg.source, clock, log, runner, credentialCheck(cfg), share),
  );
}
