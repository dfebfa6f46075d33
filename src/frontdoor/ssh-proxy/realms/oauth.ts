import { z } from 'zod';
import { SSH_FINGERPRINT, type SshRealmConfig } from '../../../config/ssh-proxy.js';
import type { Logger } from '../../../log/index.js';
import { dialTcp } from '../dial.js';
import { privateKeyProblem } from './login.js';
import { staticRoute, targetTable } from './static.js';
import {
  type LoginAttempt,
  type LoginDecision,
  type LoginRefusal,
  type Realm,
  refuse,
  type TargetRoute,
} from './types.js';

type OAuthConfig = Extract<SshRealmConfig, { type: 'oauth' }>;

/** A route as the access check may send it. Never a file path: the answer comes over the network. */
const remoteRoute = z
  .object({
    host: z.string().min(1).max(255),
    port: z.number().int().min(1).max(65535).default(22),
    user: z.string().min(1).max(256),
    password: z.string().min(1).optional(),
    private_key: z.string().min(1).optional(),
    host_fingerprint: z.string().regex(SSH_FINGERPRINT).optional(),
    insecure_skip_host_key_check: z.boolean().default(false),
    allow_port_forwarding: z.boolean().default(false),
  })
  .refine((r) => r.password !== undefined || r.private_key !== undefined, {
    message: 'needs password or private_key',
  });

/** What the access check answers (other fields are ignored). */
const accessAnswer = z.object({
  allow: z.boolean(),
  reason: z.string().optional(),
  /** Who the token belongs to, for the audit log. */
  user: z.string().optional(),
  route: z.unknown().optional(),
});

/** Printable ASCII only, shortened: text from another server that a user will see. */
const sanitize = (s: string, max = 200) => s.replace(/[^\x20-\x7e]/g, '?').slice(0, max);

export interface OAuthDeps {
  log: Logger;
  fetch?: typeof fetch;
}

type HttpResult = { ok: true; status: number; body: string } | { ok: false; why: 'timeout' | 'network' };

/**
 * `oauth`: the password is a one-time authorization code. The proxy exchanges it at
 * `token_url` (grant_type=authorization_code, with the client id and secret), then asks
 * `access_check_url` with the bearer token whether this user may reach `{target}`/`{index}`.
 * Its JSON answer allows or denies and may carry the route. A timeout or a non-2xx answer denies.
 */
export class OAuthRealm implements Realm {
  readonly type = 'oauth';
  readonly prompt = 'One-time authorization code: ';
  private readonly fallback: ReturnType<typeof targetTable>;
  private readonly fetch: typeof fetch;

  constructor(
    readonly name: string,
    private readonly cfg: OAuthConfig,
    where: string,
    private readonly deps: OAuthDeps,
  ) {
    this.fallback = targetTable(cfg.targets, where);
    this.fetch = deps.fetch ?? globalThis.fetch;
  }

  private async call(url: string, init: RequestInit): Promise<HttpResult> {
    try {
      const res = await this.fetch(url, {
        ...init,
        redirect: 'manual',
        signal: AbortSignal.timeout(this.cfg.timeout),
      });
      const body = await res.text();
      return { ok: true, status: res.status, body };
    } catch (err) {
      const name = (err as Error | undefined)?.name;
      return { ok: false, why: name === 'TimeoutError' || name === 'AbortError' ? 'timeout' : 'network' };
    }
  }

  private seconds(): string {
    const s = this.cfg.timeout / 1000;
    return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
  }

  /** The code → an access token, or the refusal. */
  private async exchange(code: string, log: Logger): Promise<string | LoginRefusal> {
    const form = new URLSearchParams({ grant_type: 'authorization_code', code });
    if (this.cfg.redirect_uri) form.set('redirect_uri', this.cfg.redirect_uri);
    const headers: Record<string, string> = {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    };
    if (this.cfg.client_auth === 'basic') {
      const enc = (s: string) => encodeURIComponent(s);
      headers.authorization = `Basic ${Buffer.from(`${enc(this.cfg.client_id)}:${enc(this.cfg.client_secret)}`).toString('base64')}`;
    } else {
      form.set('client_id', this.cfg.client_id);
      form.set('client_secret', this.cfg.client_secret);
    }
    const r = await this.call(this.cfg.token_url, { method: 'POST', headers, body: form.toString() });
    if (!r.ok) {
      log.warn({ event: 'ssh_proxy.oauth.token_failed', why: r.why }, 'token endpoint did not answer');
      const what = r.why === 'timeout' ? `did not answer within ${this.seconds()}` : 'could not be reached';
      return refuse(
        'TOKEN_ENDPOINT_UNAVAILABLE',
        `could not check the authorization code: the token endpoint ${what}; try again later`,
        { final: true, countsAsFailure: false },
      );
    }
    if (r.status >= 500 || (r.status >= 300 && r.status < 400)) {
      log.warn({ event: 'ssh_proxy.oauth.token_failed', status: r.status }, 'token endpoint failed');
      return refuse(
        'TOKEN_ENDPOINT_UNAVAILABLE',
        `could not check the authorization code: the token endpoint answered ${r.status}; try again later`,
        { final: true, countsAsFailure: false },
      );
    }
    if (r.status < 200 || r.status >= 300) {
      log.info({ event: 'ssh_proxy.oauth.code_rejected', status: r.status }, 'authorization code rejected');
      return refuse(
        'CODE_REJECTED',
        'the authorization code was not accepted (a code works once and expires quickly; get a new one)',
        { final: false, countsAsFailure: true },
      );
    }
    let token: unknown;
    try {
      token = (JSON.parse(r.body) as { access_token?: unknown }).access_token;
    } catch {
      token = undefined;
    }
    if (typeof token !== 'string' || token.length === 0) {
      log.warn(
        { event: 'ssh_proxy.oauth.token_failed', status: r.status },
        'token endpoint answered without an access_token',
      );
      return refuse(
        'TOKEN_ENDPOINT_UNAVAILABLE',
        'could not check the authorization code: the token endpoint gave no access token',
        { final: true, countsAsFailure: false },
      );
    }
    return token;
  }

  private accessUrl(target: string, index: number): string {
    return this.cfg.access_check_url
      .replaceAll('{target}', encodeURIComponent(target))
      .replaceAll('{index}', String(index));
  }

  async login(a: LoginAttempt, log: Logger = this.deps.log): Promise<LoginDecision> {
    const name = `${a.realm}:${a.target}/${a.index}`;
    const token = await this.exchange(a.secret, log);
    if (typeof token !== 'string') return token;

    const r = await this.call(this.accessUrl(a.target, a.index), {
      method: 'GET',
      headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
    });
    if (!r.ok) {
      log.warn({ event: 'ssh_proxy.oauth.access_check_failed', why: r.why }, 'access check did not answer');
      const what = r.why === 'timeout' ? `did not answer within ${this.seconds()}` : 'could not be reached';
      return refuse('ACCESS_CHECK_UNAVAILABLE', `access to ${name} denied: the access check ${what}`, {
        final: true,
        countsAsFailure: false,
      });
    }
    if (r.status < 200 || r.status >= 300) {
      log.info({ event: 'ssh_proxy.oauth.access_denied', status: r.status }, 'access check denied');
      const why =
        r.status === 404
          ? 'no such target'
          : r.status === 401 || r.status === 403
            ? 'not allowed'
            : `the access check answered ${r.status}`;
      return refuse('ACCESS_DENIED', `access to ${name} denied (${why})`, {
        final: true,
        countsAsFailure: r.status < 500,
      });
    }
    let answer: z.output<typeof accessAnswer>;
    try {
      answer = accessAnswer.parse(JSON.parse(r.body));
    } catch {
      log.warn(
        { event: 'ssh_proxy.oauth.access_check_failed', status: r.status },
        'access check answer is not {"allow": true|false, …}',
      );
      return refuse('ACCESS_DENIED', `access to ${name} denied (the access check gave no usable answer)`, {
        final: true,
        countsAsFailure: false,
      });
    }
    if (!answer.allow) {
      const reason = answer.reason ? `: ${sanitize(answer.reason)}` : '';
      return refuse('ACCESS_DENIED', `access to ${name} denied${reason}`, {
        final: true,
        countsAsFailure: true,
      });
    }

    let route: TargetRoute | undefined;
    if (answer.route !== undefined) {
      const parsed = remoteRoute.safeParse(answer.route);
      const keyProblem =
        parsed.success && parsed.data.private_key ? privateKeyProblem(parsed.data.private_key) : undefined;
      if (!parsed.success || keyProblem) {
        log.warn(
          {
            event: 'ssh_proxy.oauth.bad_route',
            problem:
              keyProblem ?? parsed.error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
          },
          'access check route unusable',
        );
        return refuse(
          'ROUTE_INVALID',
          `the route to ${name} is unusable (the access check sent an invalid route)`,
          { final: true, countsAsFailure: false },
        );
      }
      const d = parsed.data;
      route = {
        name,
        address: `${d.host}:${d.port}`,
        user: d.user,
        password: d.password,
        privateKey: d.private_key,
        hostFingerprint: d.host_fingerprint,
        insecureSkipHostKeyCheck: d.insecure_skip_host_key_check,
        allowPortForwarding: d.allow_port_forwarding,
        dial: (_origin, timeoutMs) => dialTcp(d.host, d.port, timeoutMs),
      };
    } else {
      const entry = this.fallback.get(a.target)?.[a.index];
      if (entry) route = staticRoute(name, entry);
    }
    if (!route)
      return refuse('NO_ROUTE', `access to ${name} was allowed, but no route to it is known`, {
        final: true,
        countsAsFailure: false,
      });
    return { ok: true, route, principal: answer.user ? sanitize(answer.user, 100) : undefined };
  }
}
