/**
 * Managed repositories on the connector: what the operator proposes from the gateway, checked
 * against the customer's own `managed` policy in connect.yaml. The gateway proposes, the
 * connector disposes: every proposal is validated here where it enters, checked against the
 * policy, and either served (the supervisor forwards it like a local entry) or refused with the
 * reason, which goes back to the gateway. Accepted entries are remembered in the state dir and
 * served again after a restart only if they still pass the policy then.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RepositoryConfig } from '../config/connect.js';
import type { ManagedPolicy } from '../config/managed-policy.js';
import { destinationOf, parseRepositoryUri } from '../config/uri.js';
import { type Clock, systemClock } from '../core/clock.js';
import { cleanText, parseLabel } from '../core/ids.js';
import { RefusalLog } from '../core/refusals.js';
import type { Logger } from '../log/index.js';
import {
  MAX_PROPOSAL_URI,
  type ManagedReportMessage,
  type ManagedState,
} from '../tunnel/control-protocol.js';
import { checkTarget, type Lookup, resolveTarget } from './managed-policy.js';

export const MANAGED_FILE = 'managed.json';
/** Proposals waiting for their check at once (each may resolve a name). */
const MAX_QUEUED = 64;

export interface ManagedStatus {
  label: string;
  uri: string;
  state: ManagedState | 'checking';
  reason: string | null;
  /** Where it came from: the gateway (this session), or the state dir after a restart. */
  source: 'gateway' | 'state dir';
  since: string;
}

export interface ManagedDeps {
  stateDir: string;
  log: Logger;
  policy: () => ManagedPolicy | null | undefined;
  /** Labels of connect.yaml's own repositories: they win over a managed entry of the same label. */
  localLabels: () => ReadonlySet<string>;
  /** The set of served managed repositories changed: the supervisor adds or drops forwards. */
  changed: () => void;
  send: (m: ManagedReportMessage) => void;
  lookup?: Lookup;
  clock?: Clock;
}

interface Entry {
  label: string;
  uri: string;
  /** Undefined for a proposal refused before its URI could be read. */
  repo?: RepositoryConfig;
  state: ManagedState | 'checking';
  reason: string | null;
  source: 'gateway' | 'state dir';
  since: number;
  /** Proposed again since the session started (proposals-done drops the others). */
  seen: boolean;
}

const defaultLookup: Lookup = (host) => dnsLookup(host, { all: true, verbatim: true });

export class ManagedRepos {
  private readonly entries = new Map<string, Entry>();
  private readonly lookup: Lookup;
  private readonly now: () => number;
  /** Malformed proposals are logged once per burst: a gateway cannot flood the log with them. */
  private readonly refusals: RefusalLog;
  private queue: Promise<void> = Promise.resolve();
  private queued = 0;

  constructor(private readonly deps: ManagedDeps) {
    this.lookup = deps.lookup ?? defaultLookup;
    const clock = deps.clock ?? systemClock;
    this.now = () => clock.now();
    this.refusals = new RefusalLog(deps.log, clock);
  }

  /** Repositories to serve: accepted, and not shadowed by a local entry. */
  serving(): RepositoryConfig[] {
    return [...this.entries.values()].flatMap((e) => (e.state === 'serving' && e.repo ? [e.repo] : []));
  }

  status(): ManagedStatus[] {
    return [...this.entries.values()].map((e) => ({
      label: e.label,
      uri: e.uri,
      state: e.state,
      reason: e.reason,
      source: e.source,
      since: new Date(e.since).toISOString(),
    }));
  }

  /** The address to dial for a managed repository, checked against the policy right now. */
  async resolve(
    repo: RepositoryConfig,
  ): Promise<{ ok: true; address: string } | { ok: false; reason: string }> {
    const v = await resolveTarget(this.deps.policy(), repo, this.lookup);
    if (!v.ok) {
      this.deps.log.warn(
        {
          event: 'managed.dial_refused',
          label: repo.label,
          destination: destinationOf(repo),
          reason: v.reason,
        },
        `managed ${repo.label}: not dialled: ${v.reason}`,
      );
    }
    return v;
  }

  /** A session started: reports go out again, proposals-done will say what is still proposed. */
  sessionStarted(): void {
    for (const e of this.entries.values()) e.seen = false;
    for (const e of this.entries.values()) if (e.state !== 'checking') this.report(e);
  }

  /** Handles a gateway message; false when it is not about managed repositories. */
  onMessage(m: Record<string, unknown>): boolean {
    switch (m.type) {
      case 'propose':
        this.onPropose(m);
        return true;
      case 'unpropose': {
        const label = typeof m.label === 'string' ? m.label : '';
        const e = this.entries.get(label);
        if (!e) return true;
        this.entries.delete(label);
        this.deps.log.info(
          { event: 'managed.removed', label, uri: e.uri },
          `managed ${label} removed by the operator`,
        );
        this.save();
        if (e.state === 'serving') this.deps.changed();
        return true;
      }
      case 'proposals-done': {
        let dropped = false;
        for (const e of [...this.entries.values()]) {
          if (e.seen) continue;
          this.entries.delete(e.label);
          this.deps.log.info(
            { event: 'managed.removed', label: e.label, uri: e.uri },
            `managed ${e.label} is no longer proposed by the gateway: removed`,
          );
          dropped ||= e.state === 'serving';
        }
        // the next batch must name each again
        for (const e of this.entries.values()) e.seen = false;
        this.save();
        if (dropped) this.deps.changed();
        return true;
      }
      default:
        return false;
    }
  }

  private onPropose(m: Record<string, unknown>): void {
    const log = this.deps.log;
    const rawLabel = typeof m.label === 'string' ? cleanText(m.label, 200) : '';
    const malformed = (why: string) =>
      this.refusals.refuse(
        'managed_proposal_malformed',
        'gateway',
        { label: rawLabel, why },
        `managed proposal ${rawLabel === '' ? '(no label)' : rawLabel} refused: ${why}`,
      );
    if (typeof m.label !== 'string' || !parseLabel(m.label)) {
      malformed('the label must be <group>/<repo> (letters, digits, "_" or "-")');
      return;
    }
    const label = m.label;
    if (typeof m.uri !== 'string' || m.uri.length > MAX_PROPOSAL_URI) {
      this.refuseNew(
        label,
        typeof m.uri === 'string' ? `${m.uri.slice(0, 80)}…` : '',
        `the URI must be a string of at most ${MAX_PROPOSAL_URI} characters`,
      );
      return;
    }
    const uri = m.uri.trim();
    const known = this.entries.get(label);
    if (known && known.uri === uri) {
      // The same proposal again: nothing changes, the gateway hears the state again.
      known.seen = true;
      known.source = 'gateway';
      if (known.state !== 'checking') this.report(known);
      return;
    }
    const parsed = parseRepositoryUri(uri);
    if (!parsed.ok) {
      this.refuseNew(label, uri, `invalid URI: ${parsed.message}`);
      return;
    }
    if (!known && this.entries.size >= this.limit() + MAX_QUEUED) {
      malformed(`too many managed proposals (this connector keeps at most ${this.limit() + MAX_QUEUED})`);
      return;
    }
    if (this.queued >= MAX_QUEUED) {
      this.refuseNew(label, uri, `too many proposals waiting for their check (at most ${MAX_QUEUED})`);
      return;
    }
    const p = parseLabel(label)!;
    const repo: RepositoryConfig = { label, group: p.group, name: p.repo, uri, ...parsed.target };
    const wasServing = known?.state === 'serving';
    const e: Entry = {
      label,
      uri,
      repo,
      state: 'checking',
      reason: null,
      source: 'gateway',
      since: this.now(),
      seen: true,
    };
    this.entries.set(label, e);
    if (wasServing) this.deps.changed();
    log.info(
      { event: 'managed.proposed', label, uri, destination: destinationOf(repo) },
      `managed ${label} proposed by the gateway: ${uri}`,
    );
    this.enqueue(e);
  }

  /** Checks an entry in turn (one at a time: each may resolve a name). */
  private enqueue(e: Entry): void {
    const wasServing = e.state === 'serving';
    e.state = 'checking';
    if (wasServing) this.deps.changed();
    this.queued++;
    this.queue = this.queue
      .then(() => this.decide(e))
      .catch((err: unknown) => this.deps.log.error({ err, label: e.label }, 'managed proposal check failed'))
      .finally(() => {
        this.queued--;
      });
  }

  private limit(): number {
    return this.deps.policy()?.maxEntries ?? 0;
  }

  private refuseNew(label: string, uri: string, reason: string): void {
    const e: Entry = {
      label,
      uri,
      state: 'refused',
      reason,
      source: 'gateway',
      since: this.now(),
      seen: true,
    };
    const old = this.entries.get(label);
    if (old?.state === 'serving') {
      this.entries.delete(label);
      this.deps.changed();
    }
    if (this.entries.size < this.limit() + MAX_QUEUED) this.entries.set(label, e);
    this.deps.log.warn(
      { event: 'managed.refused', label, uri, reason },
      `managed ${label} refused: ${reason}`,
    );
    this.report(e);
    this.save();
  }

  private async decide(e: Entry): Promise<void> {
    if (this.entries.get(e.label) !== e || !e.repo) return; // replaced or removed while it waited
    const v = await resolveTarget(this.deps.policy(), e.repo, this.lookup);
    if (this.entries.get(e.label) !== e) return;
    const serving = [...this.entries.values()].filter((x) => x.state === 'serving').length;
    if (!v.ok) this.settle(e, 'refused', v.reason);
    else if (this.deps.localLabels().has(e.label)) {
      this.settle(e, 'shadowed', `connect.yaml has its own ${e.label}: the local entry wins`);
    } else if (serving >= this.limit()) {
      this.settle(
        e,
        'refused',
        `this connector serves at most ${this.limit()} managed repositories (managed.max_entries)`,
      );
    } else this.settle(e, 'serving', null);
  }

  private settle(e: Entry, state: ManagedState, reason: string | null): void {
    const was = e.state;
    e.state = state;
    e.reason = reason;
    e.since = this.now();
    const event = state === 'serving' ? 'managed.accepted' : `managed.${state}`;
    const text = state === 'serving' ? 'accepted' : `${state}: ${reason}`;
    const fields = {
      event,
      label: e.label,
      uri: e.uri,
      destination: e.repo ? destinationOf(e.repo) : null,
      reason,
    };
    if (state === 'serving' || state === 'shadowed') this.deps.log.info(fields, `managed ${e.label} ${text}`);
    else this.deps.log.warn(fields, `managed ${e.label} ${text}`);
    this.report(e);
    this.save();
    if ((was === 'serving') !== (state === 'serving')) this.deps.changed();
  }

  private report(e: Entry): void {
    if (e.state === 'checking') return;
    this.deps.send({ type: 'managed', label: e.label, state: e.state, reason: e.reason, uri: e.uri });
  }

  /**
   * The policy or the local entries changed (reload): entries that no longer pass are withdrawn
   * at once (the supervisor ends their connections); shadowed ones are served once the local
   * entry is gone. Names are checked again at every dial.
   */
  recheck(why: string): void {
    for (const e of [...this.entries.values()]) {
      if (!e.repo || e.state === 'checking') continue;
      const v = checkTarget(this.deps.policy(), e.repo);
      const local = this.deps.localLabels().has(e.label);
      if (e.state === 'serving' || e.state === 'shadowed') {
        if (!v.ok) this.settle(e, 'withdrawn', `${why}: ${v.reason}`);
        else if (local && e.state === 'serving') {
          this.settle(e, 'shadowed', `connect.yaml has its own ${e.label}: the local entry wins`);
        } else if (!local && e.state === 'shadowed') this.enqueue(e);
      } else if (v.ok && this.queued < MAX_QUEUED) {
        // refused or withdrawn before, allowed now: checked again in full (names, limit, labels)
        this.enqueue(e);
      }
    }
  }

  /** Restores the entries accepted before a restart, each only if it passes the policy now. */
  restore(): void {
    const file = join(this.deps.stateDir, MANAGED_FILE);
    let saved: unknown;
    try {
      saved = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.deps.log.warn(
          { event: 'managed.state_unreadable', file },
          `${file} is unreadable: managed repositories start empty`,
        );
      }
      return;
    }
    const list = (saved as { entries?: unknown }).entries;
    if (!Array.isArray(list)) return;
    for (const item of list.slice(0, 1000)) {
      const { label, uri } = (item ?? {}) as { label?: unknown; uri?: unknown };
      if (typeof label !== 'string' || typeof uri !== 'string' || !parseLabel(label)) continue;
      const parsed = parseRepositoryUri(uri);
      if (!parsed.ok) continue;
      const p = parseLabel(label)!;
      const repo: RepositoryConfig = { label, group: p.group, name: p.repo, uri, ...parsed.target };
      const v = checkTarget(this.deps.policy(), repo);
      const e: Entry = {
        label,
        uri,
        repo,
        state: 'serving',
        reason: null,
        source: 'state dir',
        since: this.now(),
        seen: false,
      };
      if (!v.ok) {
        this.deps.log.warn(
          { event: 'managed.withdrawn', label, uri, reason: v.reason },
          `managed ${label} not restored: ${v.reason}`,
        );
        continue;
      }
      if (this.entries.size >= this.limit()) break;
      if (this.deps.localLabels().has(label)) {
        e.state = 'shadowed';
        e.reason = `connect.yaml has its own ${label}: the local entry wins`;
      }
      this.entries.set(label, e);
      this.deps.log.info(
        { event: 'managed.restored', label, uri, destination: destinationOf(repo) },
        `managed ${label} restored from the state dir: ${uri}`,
      );
    }
    this.save();
  }

  /** Writes the accepted entries (serving or shadowed) to the state dir, atomically. */
  private save(): void {
    const entries = [...this.entries.values()]
      .filter((e) => e.state === 'serving' || e.state === 'shadowed')
      .map((e) => ({ label: e.label, uri: e.uri }));
    const file = join(this.deps.stateDir, MANAGED_FILE);
    if (entries.length === 0 && !existsSync(file)) return; // nothing to remember, nothing written
    try {
      mkdirSync(this.deps.stateDir, { recursive: true, mode: 0o700 });
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, `${JSON.stringify({ version: 1, entries }, null, 2)}\n`, { mode: 0o600 });
      renameSync(tmp, file);
    } catch (err) {
      this.deps.log.warn({ err, file }, 'could not remember the managed repositories');
    }
  }
}
