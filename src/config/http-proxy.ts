import { z } from 'zod';
import { listenAddr, tlsFiles } from './schema-helpers.js';

// The HTTP front door's configuration. Owned by src/frontdoor/http-proxy.
export const httpProxySchema = z.strictObject({
  listen: listenAddr.default({ host: '127.0.0.1', port: 8443 }),
  tls: tlsFiles.optional(),
  routes: z.array(z.record(z.string(), z.unknown())).default([]),
});
export type HttpProxyConfig = z.output<typeof httpProxySchema>;
