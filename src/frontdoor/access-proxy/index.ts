import type { Component, GatewayContext } from '../../gateway/index.js';

/** The gateway's `access_proxy` front door; undefined when the config leaves it off. */
export function accessProxyComponent(ctx: GatewayContext): Component | undefined {
  if (!ctx.config.access_proxy) return undefined;
  throw new Error('access_proxy is not built yet');
}
