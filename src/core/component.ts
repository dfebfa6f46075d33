/**
 * A part of a running process that the composition root (src/gateway/) starts after the core
 * and stops before it: a front door, a tunnel transport, cluster membership. It lives here, below
 * every part that implements it, so no part has to import the gateway to say what it is.
 */
export interface Component {
  /** The key under which the gateway prints and records what `start()` returns. */
  readonly name: string;
  /** Starts serving; resolves to what to print (usually the address it listens on). */
  start(): Promise<string>;
  stop(): Promise<void>;
  /**
   * The first step of a drain (SIGTERM): stop accepting new connections, leave open ones to
   * finish; `stop()` follows once they did or the drain timed out. Absent: nothing to stop early.
   */
  drain?(): Promise<void>;
}
