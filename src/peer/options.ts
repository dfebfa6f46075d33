/**
 * The peer daemon's options: validated by config/'s pipeline (src/config/peer.ts), then the
 * certificate files are read and checked (tunnel/tls-material.ts).
 */
import { type PeerConfig, type PeerOptionsInput, parseLogLevel, peerConfigFrom } from '../config/peer.js';
import { DEFAULT_HTTP_BIND, DEFAULT_TUNNEL_BIND, LOG_LEVELS } from '../config/peer-defaults.js';
import { loadTlsMaterial, type TlsMaterial } from '../tunnel/tls-material.js';

/** Validated, frozen daemon options. An empty host means "every interface". */
export interface PeerOptions extends Omit<PeerConfig, 'tls'> {
  /** Present when all three certificate flags were given. */
  readonly tls?: TlsMaterial;
}

export { DEFAULT_HTTP_BIND, DEFAULT_TUNNEL_BIND, LOG_LEVELS, type PeerOptionsInput, parseLogLevel };

/** Validates flags and loads the certificates: every problem here is a clear startup error. */
export async function resolvePeerOptions(
  input: PeerOptionsInput,
  env: NodeJS.ProcessEnv = process.env,
): Promise<PeerOptions> {
  const { tls: files, ...cfg } = peerConfigFrom(input, env);
  const tls = files ? await loadTlsMaterial(files) : undefined;
  return Object.freeze({ ...cfg, ...(tls ? { tls } : {}) });
}
