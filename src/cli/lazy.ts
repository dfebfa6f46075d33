/**
 * A commander action that loads its implementation only when it runs, so that `tether --help`
 * or `tether tenants list` never load the gateway, the connector or the peer daemon.
 * `load` is a dynamic `import()` of the module holding the action; `name` is its export.
 */
export function lazy<M, K extends keyof M>(load: () => Promise<M>, name: K) {
  return async (...args: unknown[]): Promise<void> => {
    const mod = await load();
    await (mod[name] as (...a: unknown[]) => unknown)(...args);
  };
}
