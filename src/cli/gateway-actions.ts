import { loadGatewayConfig } from '../config/gateway.js';
import { withFrontDoors } from '../gateway/front-doors.js';
import { Gateway } from '../gateway/index.js';
import { createLogger } from '../log/index.js';
import { VERSION } from './version.js';

/** `tether gateway`: runs the gateway until SIGTERM/SIGINT (loaded only when that command runs). */
export async function run(o: { config?: string }): Promise<void> {
  const config = loadGatewayConfig(o.config);
  const log = createLogger({ level: config.log.level, audit: config.log.audit });
  const gw = withFrontDoors(new Gateway(config, { log, version: VERSION }));
  const a = await gw.start();
  log.info(
    {
      event: 'gateway.started',
      tunnel: a.tunnel,
      admin: a.adminUrl,
      host_fingerprint: a.hostFingerprint,
      data_dir: a.dataDir,
      forwards: a.forwards,
      ...a.extra,
    },
    `tether gateway ${VERSION} ready: tunnel ssh://${a.tunnel} (host key ${a.hostFingerprint}), admin ${a.adminUrl}, forwards on ${a.forwards}, data in ${a.dataDir}`,
  );
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ event: 'gateway.stopping', signal }, `received ${signal}, stopping`);
    const force = setTimeout(() => {
      log.warn('stop took longer than 5 s; exiting');
      process.exit(0);
    }, 4_500);
    force.unref();
    gw.stop().then(
      () => {
        log.info({ event: 'gateway.stopped' }, 'stopped');
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
