import type { SshRealmConfig } from '../../../config/ssh-proxy.js';
import { constantTimeEqual } from '../../../core/group-keys.js';
import { dialTcp } from '../dial.js';
import { loginFrom } from './login.js';
import { type LoginAttempt, type LoginDecision, type Realm, refuse, type TargetLogin } from './types.js';

type StaticConfig = Extract<SshRealmConfig, { type: 'static' }>;

interface StaticTarget extends TargetLogin {
  host: string;
  port: number;
}

/** Builds the routes of a target table (`name: [entry for index 0, …]`), reading key files now. */
export function targetTable(targets: StaticConfig['targets'], where: string): Map<string, StaticTarget[]> {
  const out = new Map<string, StaticTarget[]>();
  for (const [name, entries] of Object.entries(targets)) {
    out.set(
      name,
      entries.map((e, i) => ({
        host: e.host,
        port: e.port,
        ...loginFrom(e, `${where}.targets.${name}[${i}]`),
      })),
    );
  }
  return out;
}

/** Makes the route for one configured entry. */
export function staticRoute(name: string, t: StaticTarget) {
  const { host, port, ...login } = t;
  return {
    ...login,
    name,
    address: `${host}:${port}`,
    dial: (_origin: unknown, timeoutMs: number) => dialTcp(host, port, timeoutMs),
  };
}

/**
 * `static`: the password must equal one shared credential (constant-time compare); the
 * targets are this config's.
 */
export class StaticRealm implements Realm {
  readonly type = 'static';
  readonly prompt = 'Password: ';
  private readonly targets: Map<string, StaticTarget[]>;

  constructor(
    readonly name: string,
    private readonly cfg: StaticConfig,
    where: string,
  ) {
    this.targets = targetTable(cfg.targets, where);
  }

  async login(a: LoginAttempt): Promise<LoginDecision> {
    if (!constantTimeEqual(a.secret, this.cfg.credential)) {
      return refuse('WRONG_PASSWORD', `wrong password for realm ${this.name}`, {
        final: false,
        countsAsFailure: true,
      });
    }
    const entries = this.targets.get(a.target);
    if (!entries)
      return refuse('TARGET_UNKNOWN', `realm ${this.name} has no target "${a.target}"`, {
        final: true,
        countsAsFailure: false,
      });
    const entry = entries[a.index];
    if (!entry) {
      const range = entries.length === 1 ? 'only index 0' : `indexes 0-${entries.length - 1}`;
      return refuse(
        'TARGET_UNKNOWN',
        `target "${a.target}" of realm ${this.name} has ${range}, not ${a.index}`,
        { final: true, countsAsFailure: false },
      );
    }
    return { ok: true, route: staticRoute(`${a.realm}:${a.target}/${a.index}`, entry) };
  }
}
