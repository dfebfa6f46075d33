/** Defaults of `tether peer run`, in a module of their own (no imports) so the CLI's help loads no peer or config code. */
export const DEFAULT_TUNNEL_BIND = ':9090';
export const DEFAULT_HTTP_BIND = ':9091';
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;
/** `--drain-timeout` unless given: as the connector's `drain_timeout`, within `docker stop`'s 10 s. */
export const DEFAULT_PEER_DRAIN_TIMEOUT = '5s';
