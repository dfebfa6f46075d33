/** Defaults of `tether peer run`, in a module of their own (no imports) so the CLI's help loads no peer or config code. */
export const DEFAULT_TUNNEL_BIND = ':9090';
export const DEFAULT_HTTP_BIND = ':9091';
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;
