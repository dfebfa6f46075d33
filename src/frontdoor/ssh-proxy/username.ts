import { SSH_MAX_INDEX, SSH_REALM_NAME, SSH_TARGET_NAME } from '../../config/ssh-proxy.js';

/** What an SSH front door username names: `<realm>:<target>/<index>`. */
export interface ProxyUsername {
  realm: string;
  target: string;
  index: number;
}

export type UsernameResult = { ok: true; value: ProxyUsername } | { ok: false; reason: string };

/** Longest username looked at. */
export const MAX_USERNAME = 256;

const FORM = 'use <realm>:<target>/<index>, e.g. static:web-1/0';

const strip = (re: RegExp) => re.source.replace(/^\^/, '').replace(/\$$/, '');

/** The whole grammar in one anchored pattern: it alone decides what is accepted. */
export const USERNAME_PATTERN = new RegExp(
  `^(${strip(SSH_REALM_NAME)}):(${strip(SSH_TARGET_NAME)})/(0|[1-9][0-9]{0,3})$`,
);

const fail = (reason: string): UsernameResult => ({ ok: false, reason });

/** Quotes a piece of an already printable-ASCII username for a message, shortened. */
const q = (s: string) => JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…` : s);

/**
 * Parses a username such as `static:web-1/0`. Pure; never throws. The anchored pattern decides;
 * the checks before it only find the clearest reason to give for a refusal. A reason is safe to
 * show the client (input is echoed only once it is known to be printable ASCII, and shortened).
 */
export function parseProxyUsername(input: unknown): UsernameResult {
  if (typeof input !== 'string' || input.length === 0) return fail(`empty username: ${FORM}`);
  if (input.length > MAX_USERNAME) return fail(`username longer than ${MAX_USERNAME} characters`);
  if (!/^[\x21-\x7e]+$/.test(input))
    return fail(`username has non-ASCII, space or control characters: ${FORM}`);

  const colon = input.indexOf(':');
  if (colon < 0) return fail(`${q(input)} has no ":" between realm and target: ${FORM}`);
  const realm = input.slice(0, colon);
  const rest = input.slice(colon + 1);
  if (realm.length === 0) return fail(`${q(input)} has no realm before ":": ${FORM}`);
  if (!SSH_REALM_NAME.test(realm))
    return fail(`invalid realm name ${q(realm)} (1-32 characters a-z, 0-9, "_" or "-")`);
  if (rest.includes(':')) return fail(`${q(input)} has more than one ":": ${FORM}`);

  const slash = rest.indexOf('/');
  if (slash < 0) return fail(`${q(input)} has no "/<index>" after the target: ${FORM}`);
  if (rest.indexOf('/', slash + 1) >= 0) return fail(`${q(input)} has more than one "/": ${FORM}`);
  const target = rest.slice(0, slash);
  const indexText = rest.slice(slash + 1);
  if (target.length === 0) return fail(`${q(input)} has no target between ":" and "/": ${FORM}`);
  if (!SSH_TARGET_NAME.test(target)) {
    return fail(
      `invalid target name ${q(target)} (1-200 characters A-Z, a-z, 0-9, ".", "_" or "-", starting with a letter or digit)`,
    );
  }

  if (indexText.length === 0) return fail(`${q(input)} has no index after "/": ${FORM}`);
  if (indexText.startsWith('-'))
    return fail(`index ${q(indexText)} is negative: use a whole number from 0 to ${SSH_MAX_INDEX}`);
  if (!/^[0-9]+$/.test(indexText))
    return fail(`index ${q(indexText)} is not a whole number from 0 to ${SSH_MAX_INDEX}`);
  if (indexText.length > 1 && indexText.startsWith('0'))
    return fail(
      `index ${q(indexText)} has leading zeros: write it as ${Number(indexText) <= SSH_MAX_INDEX ? String(Number(indexText)) : 'a number from 0 to 9999'}`,
    );
  if (indexText.length > 4 || Number(indexText) > SSH_MAX_INDEX)
    return fail(`index ${q(indexText)} is out of range: use 0 to ${SSH_MAX_INDEX}`);

  const m = USERNAME_PATTERN.exec(input);
  if (!m) return fail(`${q(input)} is not a valid username: ${FORM}`);
  return { ok: true, value: { realm: m[1]!, target: m[2]!, index: Number(m[3]) } };
}

/** The username that names `u`; `parseProxyUsername(formatProxyUsername(u))` gives `u` back. */
export function formatProxyUsername(u: ProxyUsername): string {
  return `${u.realm}:${u.target}/${u.index}`;
}
