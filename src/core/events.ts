import { EventEmitter } from 'node:events';

/** What happened to a tenant; the gateway (and every cluster member) reacts by ending sessions. */
export type TenantChange = TenantChangeKind & {
  /** "remote" when another cluster member made the change (it must not be broadcast again). */
  origin?: 'remote';
};

type TenantChangeKind =
  | { kind: 'added'; tenant: string }
  | { kind: 'removed'; tenant: string }
  | { kind: 'quota'; tenant: string; quota: number }
  | { kind: 'keys-replaced'; tenant: string }
  | { kind: 'key-removed'; tenant: string; fingerprint: string }
  | { kind: 'group-key-rotated'; tenant: string; group: string }
  | { kind: 'limits'; tenant: string }
  /** The operator's managed repositories of the tenant changed: connectors get them again. */
  | { kind: 'managed'; tenant: string }
  | { kind: 'allow-from'; tenant: string };

export class TenantEvents {
  private readonly ee = new EventEmitter();

  constructor() {
    this.ee.setMaxListeners(0);
  }

  emit(change: TenantChange): void {
    this.ee.emit('change', change);
  }

  on(fn: (change: TenantChange) => void): () => void {
    this.ee.on('change', fn);
    return () => this.ee.off('change', fn);
  }
}
