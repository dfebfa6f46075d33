import { z } from 'zod';
import { listenAddr } from './schema-helpers.js';

// The SSH front door's configuration. Owned by src/frontdoor/ssh-proxy.
export const sshProxySchema = z.strictObject({
  listen: listenAddr.default({ host: '127.0.0.1', port: 2022 }),
  realms: z.record(z.string(), z.record(z.string(), z.unknown())).default({}),
});
export type SshProxyConfig = z.output<typeof sshProxySchema>;
