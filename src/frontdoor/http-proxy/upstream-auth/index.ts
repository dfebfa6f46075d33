import type { SecretSource, UpstreamAuth } from '../../../config/http-proxy.js';
import type { Clock } from '../../../core/clock.js';
import type { Logger } from '../../../log/index.js';
import { type CommandRunner, CommandSecret } from './command.js';
import { FileSecret } from './file.js';
import { StaticSecret } from './static.js';
import { credentialUnavailable, type SecretProvider } from './types.js';

export function secretProvider(
  src: SecretSource,
  clock: Clock,
  log: Logger,
  runner?: CommandRunner,
): SecretProvider {
  switch (src.kind) {
    case 'static':
      return new StaticSecret(src.value);
    case 'file':
      return new FileSecret(src.path, log);
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
      );
  }
}

/** The header a route adds to every upstream request (after the caller's credentials were removed). */
export class UpstreamCredential {
  readonly headerName: string;
  private lastSecret: string | undefined;
  private lastValue = '';
  private bad = false;

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
      this.bad = /[\r\n\0]/.test(secret);
    }
    if (this.bad) throw credentialUnavailable('the value contains a line break or NUL');
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
): UpstreamCredential {
  return new UpstreamCredential(cfg, secretProvider(cfg.source, clock, log, runner));
}
