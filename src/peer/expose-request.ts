import { z } from 'zod';
import { type HostPort, isValidHost, parseHostPort } from '../config/host-port.js';
import { type FieldProblem, TetherError } from '../errors/index.js';

/** Direction of an exposure, as the API spells it in requests. */
export type ExposeType = 'local' | 'remote';

/** A validated POST /expose body. */
export interface ExposeSpec {
  readonly name: string;
  readonly sourcePort: number;
  /** Where the listener binds (on the remote peer for "local", here for "remote"). */
  readonly sourceAddr: string;
  readonly remoteConnectorAddr: HostPort;
  readonly destinationAddr: HostPort;
  readonly type: ExposeType;
}

/** Default listen host of an exposure, as with the connector this API comes from: every interface. */
export const DEFAULT_SOURCE_ADDR = '0.0.0.0';

function typeError(expected: string) {
  return (iss: { input?: unknown }) =>
    iss.input === undefined ? 'is required' : `must be ${expected}, got ${describe(iss.input)}`;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v)}`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${JSON.stringify(v)}`;
}

const address = z.string({ error: typeError('a "host:port" string') }).transform((s, ctx) => {
  const r = parseHostPort(s, { defaultHost: 'localhost' });
  if (!r.ok) {
    ctx.addIssue({ code: 'custom', message: r.problem });
    return z.NEVER;
  }
  return r.value;
});

const schema = z.object({
  name: z
    .string({ error: typeError('a string') })
    .trim()
    .min(1, 'must not be empty'),
  source_port: z
    .number({ error: typeError('a whole number from 1 to 65535') })
    .int('must be a whole number from 1 to 65535')
    .min(1, 'must be from 1 to 65535')
    .max(65535, 'must be from 1 to 65535'),
  source_addr: z
    .string({ error: typeError('an IP address or host name') })
    .trim()
    .refine((s) => isValidHost(s), 'is not an IP address or host name')
    .optional(),
  remote_connector_addr: address,
  destination_addr: address,
  type: z
    .string({ error: typeError('"local" or "remote"') })
    .transform((s) => s.toLowerCase())
    .pipe(
      z.enum(['local', 'remote'], {
        error: (iss) => `must be "local" or "remote", got ${describe(iss.input)}`,
      }),
    ),
});

/**
 * Validates a POST /expose body. Unknown fields are ignored (clients of the connector this API
 * comes from send the same body). Every problem names its field.
 */
export function parseExposeRequest(body: unknown): ExposeSpec {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new TetherError('BAD_REQUEST', 'request body must be a JSON object', { status: 400 });
  }
  const r = schema.safeParse(body);
  if (!r.success) {
    const details: FieldProblem[] = r.error.issues.map((i) => ({
      path: i.path.map(String).join('.'),
      message: i.message,
    }));
    const message = `invalid request: ${details.map((d) => `${d.path}: ${d.message}`).join('; ')}`;
    throw new TetherError('BAD_REQUEST', message, { status: 400, details });
  }
  const v = r.data;
  return Object.freeze({
    name: v.name,
    sourcePort: v.source_port,
    sourceAddr: v.source_addr ?? DEFAULT_SOURCE_ADDR,
    remoteConnectorAddr: v.remote_connector_addr,
    destinationAddr: v.destination_addr,
    type: v.type,
  });
}
