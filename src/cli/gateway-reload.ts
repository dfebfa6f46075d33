import { type GatewayConfig, loadGatewayConfig } from '../config/gateway.js';
import type { Logger } from '../log/index.js';

/**
 * SIGHUP (`systemctl reload`): gateway.yaml is read at start only, so a reload changes nothing
 * that runs; it re-reads and validates the file and says which top-level keys differ from the
 * running config (they apply at the next restart, which drains). A broken file is reported
 * while the gateway still serves, before a restart would fail on it.
 */
export function checkConfigAgain(file: string | undefined, running: GatewayConfig, log: Logger): void {
  let next: GatewayConfig;
  try {
    next = loadGatewayConfig(file);
  } catch (err) {
    log.error(
      { event: 'gateway.reload_invalid', file: file ?? '(defaults)' },
      `SIGHUP: ${(err as Error).message}; the running gateway is unchanged, and a restart would fail until this is fixed`,
    );
    return;
  }
  const keys = new Set([...Object.keys(running), ...Object.keys(next)]);
  const changed = [...keys]
    .filter(
      (k) =>
        JSON.stringify((running as Record<string, unknown>)[k]) !==
        JSON.stringify((next as Record<string, unknown>)[k]),
    )
    .sort();
  log.info(
    { event: 'gateway.reload_checked', file: file ?? '(defaults)', changed },
    changed.length === 0
      ? 'SIGHUP: gateway.yaml is valid and unchanged'
      : `SIGHUP: gateway.yaml is valid; ${changed.join(', ')} changed and take${changed.length === 1 ? 's' : ''} effect at the next restart (a restart drains first)`,
  );
}
