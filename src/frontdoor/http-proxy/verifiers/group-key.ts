import type { GroupKeyService } from '../../../core/group-keys.js';
import { type CallerCredential, type Verdict, type Verifier, verifierUnavailable } from './types.js';

/**
 * The repository's group key as the caller's credential (Basic `<tenant>:<group key>`, the
 * access proxy's convention, or `Bearer <group key>`). The front door clears its cached
 * answers when a group key rotates or a tenant changes.
 */
export class GroupKeyVerifier implements Verifier {
  constructor(
    private readonly groupKeys: Pick<GroupKeyService, 'verify'>,
    private readonly tenant: string,
    private readonly group: string,
  ) {}

  async verify(c: CallerCredential): Promise<Verdict> {
    let ok: boolean;
    try {
      ok = await this.groupKeys.verify(this.tenant, this.group, c.token);
    } catch (e) {
      throw verifierUnavailable('the key store did not answer', e);
    }
    if (c.username !== undefined && c.username !== this.tenant)
      return { ok: false, reason: 'the username is not the tenant id' };
    return ok
      ? { ok: true, subject: `${this.tenant}/${this.group}`, scopes: null }
      : { ok: false, reason: 'wrong group key' };
  }
}
