import type { Component, GatewayContext } from '../../gateway/index.js';

/** The gateway's `http_proxy` front door; undefined when the config leaves it off. */
export function httpProxyComponent(ctx: GatewayContext): Component | undefined {
  if (!ctx.config.http_proxy) return undefined;
  throw new Error('http_proxy is not built yet');
}
