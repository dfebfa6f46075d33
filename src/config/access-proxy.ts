import { z } from 'zod';
import { duration, listenAddr } from './schema-helpers.js';

export const accessProxySchema = z.strictObject({
  listen: listenAddr.default({ host: '127.0.0.1', port: 3128 }),
  /** Idle clients that send no request head within this time are closed. */
  header_timeout: duration.default(10_000),
  /** Wrong-key attempts per source address before refusals start. */
  max_failures: z.number().int().min(1).default(10),
  failure_window: duration.default(60_000),
});
export type AccessProxyConfig = z.output<typeof accessProxySchema>;
