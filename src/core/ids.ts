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
