import { createRequire } from 'node:module';
import type * as ProxyProtocol from 'proxy-protocol-js';

export type { ProxyProtocol };

let lib: typeof ProxyProtocol | undefined;

/**
 * proxy-protocol-js, loaded on first use (about 2 MiB resident): a gateway without a PROXY
 * protocol listener and a connector without a `proxy_protocol` repository never load it.
 */
export function proxyProtocol(): typeof ProxyProtocol {
  lib ??= createRequire(import.meta.url)('proxy-protocol-js') as typeof ProxyProtocol;
  return lib;
}
