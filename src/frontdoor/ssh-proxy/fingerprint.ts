import { SSH_FINGERPRINT } from '../../config/ssh-proxy.js';
import { fingerprintOf, md5FingerprintOf } from '../../core/ssh-keys.js';

/** A host key's fingerprints in the forms `ssh-keygen -l` prints (`-E sha256`, `-E md5`). */
export interface HostKeyFingerprints {
  sha256: string;
  md5: string;
}

export function fingerprintsOf(publicKeyBlob: Buffer): HostKeyFingerprints {
  return { sha256: fingerprintOf(publicKeyBlob), md5: md5FingerprintOf(publicKeyBlob) };
}

/**
 * The canonical form of a configured fingerprint: `SHA256:<base64 without padding>` or
 * `MD5:<lower-case hex pairs>` (a bare hex form gets the `MD5:` prefix). Undefined when it is
 * neither.
 */
export function normalizeFingerprint(text: string): string | undefined {
  const s = text.trim();
  if (!SSH_FINGERPRINT.test(s)) return undefined;
  if (s.startsWith('SHA256:')) return s.replace(/=+$/, '');
  return `MD5:${s.replace(/^MD5:/, '').toLowerCase()}`;
}

/** Whether a presented host key has the expected fingerprint (either form). */
export function fingerprintMatches(expected: string, publicKeyBlob: Buffer): boolean {
  const want = normalizeFingerprint(expected);
  if (!want) return false;
  const got = fingerprintsOf(publicKeyBlob);
  return want.startsWith('SHA256:') ? want === got.sha256 : want === got.md5;
}
