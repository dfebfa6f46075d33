import { readFileSync } from 'node:fs';
import ssh2, { type Client } from 'ssh2';
import type { TestGateway } from './gateway.js';

/**
 * An SSH login (ssh2) as a tenant whose forwarded connections echo what they receive: a
 * connector without a connector process, for tests that count where sessions land. `onAccept`
 * is called for every forwarded connection it accepts.
 */
export function echoLogin(
  port: number,
  username: string,
  keyFile: string,
  o: { host?: string; onAccept?: () => void } = {},
): Promise<Client> {
  return new Promise((resolve, reject) => {
    const c = new ssh2.Client();
    c.on('tcp connection', (_info, accept) => {
      o.onAccept?.();
      const ch = accept();
      ch.on('error', () => {});
      ch.pipe(ch);
    });
    c.once('ready', () => resolve(c));
    c.once('error', reject);
    c.connect({
      host: o.host ?? '127.0.0.1',
      port,
      username,
      privateKey: readFileSync(keyFile),
      readyTimeout: 30_000,
    });
  });
}

/** Asks for a remote forward `label` on port 0 (the gateway picks the lease port). */
export const forwardIn = (c: Client, label: string) =>
  new Promise<{ err?: Error; port?: number }>((r) =>
    c.forwardIn(label, 0, (err, port) => r({ err: err ?? undefined, port })),
  );

/** A forward as the admin API lists it, with the worker or member serving it. */
export interface ForwardJson {
  label: string;
  port: number;
  state: string;
  node: string | null;
}

/** A tenant's forwards in `gw`'s admin API. */
export const forwardsOf = async (gw: TestGateway, tenant: string) =>
  ((await gw.api('GET', `/v1/tenants/${tenant}`)).json as { tenant: { forwards: ForwardJson[] } }).tenant
    .forwards;
