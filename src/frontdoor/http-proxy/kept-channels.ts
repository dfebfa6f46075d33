/**
 * Tunnel channels kept per caller connection. Requests a caller sends over one keep-alive
 * connection to one tenant route, as one identity, go over one tunnel channel (and so one
 * connection to the private service) instead of a channel each: on a link with tens of
 * milliseconds of round trip between gateway and connector, each request saves the round trip
 * of opening a channel and the connector's dial. A channel is never shared between caller
 * connections or identities, so an upstream that answers out of turn reaches only the caller
 * that asked it; it closes with the caller's connection, when that connection turns to another
 * route or identity, after `KEPT_IDLE_MS` unused, and after its request when the connector that
 * carries it no longer serves the repository (it stops, or moves to another gateway: it waits for
 * its connections to end, and the caller's next request goes to a connector that serves it).
 */
import http from 'node:http';
import type { Socket } from 'node:net';

/** An unused kept channel closes after this long: below services' usual keep-alive timeouts
 * (5 s and more), so that the gateway, not the service, ends an idle channel and a request
 * never goes out on a connection the service is closing. */
export const KEPT_IDLE_MS = 2_000;

const KEPT = Symbol('tether.keptChannel');
const IDLE = Symbol('tether.keptIdle');

/** Bytes a kept channel carried, over all of its requests; its connection record gets them. */
export interface ChannelBytes {
  up: number;
  down: number;
}
const BYTES = Symbol('tether.channelBytes');
const SERVED = Symbol('tether.channelServed');

type Channel = Socket & { [IDLE]?: NodeJS.Timeout; [BYTES]?: ChannelBytes; [SERVED]?: () => boolean };

/**
 * Opens a tunnel channel for the request that needs one; `bytes` is the channel's tally.
 * `stillServed` tells, once a request is done, whether the channel may carry another.
 */
export type OpenChannel = (
  bytes: ChannelBytes,
  cb: (err: Error | null, channel?: Socket, stillServed?: () => boolean) => void,
) => void;

interface Kept {
  key: string;
  agent: http.Agent;
  /** The latest request's opener: a new channel is opened on behalf of the request that waits. */
  open: OpenChannel;
}

/**
 * The agent that keeps this caller connection's channel for `key` (a route and an identity).
 * `open` is called when the connection has no usable channel for the key.
 */
export function keptChannelAgent(caller: Socket, key: string, open: OpenChannel): http.Agent {
  const holder = caller as Socket & { [KEPT]?: Kept };
  const had = holder[KEPT];
  if (had?.key === key) {
    had.open = open;
    return had.agent;
  }
  had?.agent.destroy();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1 });
  const kept: Kept = { key, agent, open };
  agent.createConnection = ((_o: unknown, cb: (err: Error | null, s?: Socket) => void) => {
    const bytes: ChannelBytes = { up: 0, down: 0 };
    kept.open(bytes, (err, channel, stillServed) => {
      if (channel) {
        (channel as Channel)[BYTES] = bytes;
        (channel as Channel)[SERVED] = stillServed;
      }
      cb(err, channel);
    });
    return undefined;
  }) as unknown as http.Agent['createConnection'];
  agent.on('free', (s: Channel) => {
    // its connector left: kept for no further request (unless the agent already handed it to one)
    if (s[SERVED]?.() === false && Object.values(agent.freeSockets).some((l) => l?.includes(s))) {
      s.destroy();
      return;
    }
    clearTimeout(s[IDLE]);
    s[IDLE] = setTimeout(() => s.destroy(), KEPT_IDLE_MS);
    s[IDLE].unref();
  });
  holder[KEPT] = kept;
  if (!had) caller.once('close', () => holder[KEPT]?.agent.destroy());
  return agent;
}

/** A request got its channel: the channel is busy again, and its body bytes are tallied there. */
export function channelInUse(s: Socket): ChannelBytes | undefined {
  const c = s as Channel;
  clearTimeout(c[IDLE]);
  return c[BYTES];
}
