import { errors } from '../errors/index.js';

export const TENANT_ID = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export function assertTenantId(id: string): void {
  if (!TENANT_ID.test(id)) throw errors.invalidTenantId(id);
}

/** A forward label: "<group>/<repo>" from our connector, anything printable from plain OpenSSH. */
const LABEL = /^[\x21-\x7e]{1,200}$/;

export function isValidLabel(label: string): boolean {
  return LABEL.test(label);
}

export interface ParsedLabel {
  group: string;
  repo: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;

/** "<group>/<repo>" → parts, or undefined when the label is not of that form. */
export function parseLabel(label: string): ParsedLabel | undefined {
  const parts = label.split('/');
  if (parts.length !== 2) return undefined;
  const [group, repo] = parts as [string, string];
  if (!NAME.test(group) || !NAME.test(repo)) return undefined;
  return { group, repo };
}

export function isValidName(name: string): boolean {
  return NAME.test(name);
}

/**
 * Characters that must never reach a terminal or a log line raw: C0 and C1 controls, DEL, and
 * the Unicode bidirectional overrides and isolates that reorder what a reader sees.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
export const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

export function hasControlChars(s: string): boolean {
  CONTROL_CHARS.lastIndex = 0;
  const found = CONTROL_CHARS.test(s);
  CONTROL_CHARS.lastIndex = 0;
  return found;
}

/** Free text from a remote party, made safe to store and show: controls become "?", at most `max` characters. */
export function cleanText(s: string, max: number): string {
  return s.slice(0, max).replace(CONTROL_CHARS, '?');
}

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?$/;

/** A DNS host name (letters, digits, "-", "_", dots; labels of at most 63, 253 in all). */
export function isValidHostname(s: string): boolean {
  return HOSTNAME.test(s);
}
