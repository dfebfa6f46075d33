import { createHash } from 'node:crypto';
import type { Logger } from '../../../log/index.js';
import { type CallerCredential, type Verdict, type Verifier, verifierUnavailable } from './types.js';

export interface RemoteVerifierOptions {
  url: string;
  method: 'GET' | 'POST';
  send: 'bearer' | 'basic';
  timeout: number;
  scope_field?: string;
  headers?: Record<string, string>;
}

const MAX_BODY = 1024 * 1024;

/** Values at a dotted path; arrays met on the way (or at the end) are walked. */
export function pluck(value: unknown, path: readonly string[]): unknown[] {
  if (Array.isArray(value)) return value.flatMap((v) => pluck(v, path));
  if (path.length === 0) return [value];
  if (value !== null && typeof value === 'object' && Object.hasOwn(value, path[0]!)) {
    return pluck((value as Record<string, unknown>)[path[0]!], path.slice(1));
  }
  return [];
}

/** Scopes listed by a verifier's JSON answer at `field` (strings only). */
export function scopesFrom(body: unknown, field: string): string[] {
  return pluck(body, field.split('.')).filter((v): v is string => typeof v === 'string' && v !== '');
}

async function readBounded(res: Response): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.length;
    if (n > MAX_BODY) {
      await reader.cancel();
      throw new Error(`answer larger than ${MAX_BODY} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Asks a verification URL about a token: 2xx = valid, 401/403 and other 4xx = invalid;
 * 5xx, 408, 429, redirects, a timeout or no answer = "cannot tell" (a 503 for the caller, never
 * a pass). With `scope_field`, the JSON answer lists what the caller may access.
 */
export class RemoteVerifier implements Verifier {
  private readonly scopePath: string | undefined;

  constructor(
    private readonly opts: RemoteVerifierOptions,
    private readonly log: Logger,
  ) {
    this.scopePath = opts.scope_field;
  }

  /** Its answers depend on the token alone: the same in every worker (verdicts may be shared). */
  version(): string {
    return this.opts.url;
  }

  async verify(c: CallerCredential): Promise<Verdict> {
    const authorization =
      this.opts.send === 'basic'
        ? `Basic ${Buffer.from(`${c.username ?? ''}:${c.token}`).toString('base64')}`
        : `Bearer ${c.token}`;
    const started = Date.now();
    let res: Response;
    let text: string;
    try {
      res = await fetch(this.opts.url, {
        method: this.opts.method,
        headers: { accept: 'application/json', ...this.opts.headers, authorization },
        redirect: 'manual',
        signal: AbortSignal.timeout(this.opts.timeout),
      });
      text = await readBounded(res);
    } catch (e) {
      const timedOut = (e as Error).name === 'TimeoutError' || (e as Error).name === 'AbortError';
      const why = timedOut ? `no answer within ${this.opts.timeout} ms` : 'cannot reach it';
      this.log.warn(
        {
          event: 'http_proxy.verifier.unavailable',
          url: this.opts.url,
          reason: why,
          err_code: (e as { cause?: { code?: string } }).cause?.code,
        },
        `token verifier ${this.opts.url}: ${why}`,
      );
      throw verifierUnavailable(why, e);
    }
    const ms = Date.now() - started;
    const s = res.status;
    if (s >= 200 && s < 300) {
      let scopes: string[] | null = null;
      if (this.scopePath) {
        try {
          scopes = scopesFrom(JSON.parse(text), this.scopePath);
        } catch {
          this.log.warn(
            { event: 'http_proxy.verifier.bad_answer', url: this.opts.url, status: s },
            'token verifier answered 2xx without JSON',
          );
          throw verifierUnavailable('its answer is not JSON');
        }
      }
      this.log.debug(
        { event: 'http_proxy.verifier.valid', url: this.opts.url, status: s, ms },
        'token verified',
      );
      return {
        ok: true,
        subject: c.username ?? `token:${createHash('sha256').update(c.token).digest('hex').slice(0, 12)}`,
        scopes,
      };
    }
    if (s >= 500 || s === 408 || s === 429 || (s >= 300 && s < 400)) {
      this.log.warn(
        { event: 'http_proxy.verifier.unavailable', url: this.opts.url, status: s, ms },
        `token verifier answered ${s}`,
      );
      throw verifierUnavailable(`it answered ${s}`);
    }
    this.log.debug(
      { event: 'http_proxy.verifier.invalid', url: this.opts.url, status: s, ms },
      'token refused by verifier',
    );
    return { ok: false, reason: `verifier answered ${s}` };
  }
}
