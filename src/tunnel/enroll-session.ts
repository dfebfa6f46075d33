import type { Connection } from 'ssh2';
import type { TenantService } from '../core/tenants.js';
import type { FailureThrottle } from '../core/throttle.js';
import { isTetherError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import { CONTROL_SUBSYSTEM, encode, type GatewayMessage, JsonLineDecoder } from './control-protocol.js';
import { destroySocket, refuseSessionUse } from './session-util.js';

/**
 * An enrollment login (user `tether-enroll`, any key): it has not proven who it is, so it is
 * treated as not logged in. It stays in the unauthenticated set (and meets the auth timeout),
 * gets one session channel and one token attempt; a wrong token counts as a failed login of its
 * address and a right one never clears that address's failures.
 */
export function runEnrollSession(
  client: Connection,
  o: {
    source: string;
    ip: string;
    keyLine: string;
    tenants: TenantService;
    throttle: FailureThrottle;
    log: Logger;
  },
): void {
  const { log, tenants } = o;
  let channels = 0;
  let attempted = false;
  const finish = () => {
    client.end();
    destroySocket(client);
  };
  client.on('request', (_accept, reject) => reject?.());
  client.on('session', (acceptSession, rejectSession) => {
    if (++channels > 1) {
      log.info(
        { event: 'enroll.refused', source: o.source, reason: 'second channel' },
        'enrollment: second channel refused',
      );
      rejectSession?.();
      return;
    }
    const session = acceptSession();
    session.on('subsystem', (accept, reject, info: { name: string }) => {
      if (info.name !== CONTROL_SUBSYSTEM || attempted) return reject();
      const ch = accept();
      const send = (m: GatewayMessage) => ch.write(encode(m));
      const end = () => {
        ch.end();
        finish();
      };
      const decoder = new JsonLineDecoder(
        (msg) => {
          if (attempted) return;
          attempted = true;
          if (msg.type !== 'enroll' || typeof msg.token !== 'string') {
            send({ type: 'error', code: 'ENROLLMENT_ONLY', message: 'this session may only enroll a key' });
            end();
            return;
          }
          tenants.enroll(msg.token.slice(0, 200), o.keyLine).then(
            (r) => {
              log.info(
                { event: 'tenant.enrolled', tenant: r.tenant, fingerprint: r.fingerprint, source: o.source },
                'key enrolled',
              );
              send({ type: 'enrolled', tenant: r.tenant, fingerprint: r.fingerprint });
              end();
            },
            (err: unknown) => {
              o.throttle.fail(o.ip);
              log.info(
                { event: 'enroll.failed', source: o.source, reason: String((err as Error).message) },
                'enrollment refused',
              );
              send({
                type: 'error',
                code: isTetherError(err) ? err.code : 'INTERNAL',
                message: isTetherError(err) ? err.message : 'enrollment failed',
              });
              end();
            },
          );
        },
        (why) => {
          if (attempted) return;
          attempted = true;
          send({ type: 'error', code: 'BAD_CONTROL_MESSAGE', message: why });
          end();
        },
        4096,
      );
      ch.on('data', (c: Buffer) => decoder.push(c));
    });
    refuseSessionUse(session);
  });
}
