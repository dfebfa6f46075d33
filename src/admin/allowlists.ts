import type { AllowlistPatch } from '../tunnel/source-allowlists.js';

/** The allowlist fields of an add or change body as a change, or undefined when it has none. */
export function allowlistPatch(b: {
  allow_from?: string[] | null;
  tunnel_from?: string[] | null;
}): AllowlistPatch | undefined {
  if (b.allow_from === undefined && b.tunnel_from === undefined) return undefined;
  return {
    ...(b.allow_from !== undefined ? { allowFrom: b.allow_from } : {}),
    ...(b.tunnel_from !== undefined ? { tunnelFrom: b.tunnel_from } : {}),
  };
}
