import type { Component, GatewayContext } from '../../gateway/index.js';

/** The gateway's `ssh_proxy` front door; undefined when the config leaves it off. */
export function sshProxyComponent(ctx: GatewayContext): Component | undefined {
  if (!ctx.config.ssh_proxy) return undefined;
  throw new Error('ssh_proxy is not built yet');
}
