/** Persistent state. Two implementations (SQLite, PostgreSQL) behind one interface. */

export interface TenantRow {
  id: string;
  quota: number;
  created_at: string;
  updated_at: string;
}

export interface KeyRow {
  tenant_id: string;
  /** SHA256:… as ssh-keygen -l prints it. */
  fingerprint: string;
  /** The OpenSSH public key line ("ssh-ed25519 AAAA… comment"). */
  public_key: string;
  created_at: string;
}

/** A (tenant, label) → port lease, with the repository metadata its connector last sent. */
export interface LeaseRow {
  tenant_id: string;
  label: string;
  port: number;
  created_at: string;
  /** When its forward last went up or down, or its connector last sent metadata. */
  last_used_at: string;
  /**
   * When the lease first proved itself: it carried a connection, or its forward stayed up for
   * `forwards.unused_lease_ttl`. Null = never used; such a lease expires after the short TTL.
   */
  established_at: string | null;
  service: string | null;
  scheme: string | null;
  host: string | null;
  dest_port: number | null;
  path: string | null;
}

export interface RepoMeta {
  service: string | null;
  scheme: string | null;
  host: string | null;
  dest_port: number | null;
  path: string | null;
}

export interface GroupKeyRow {
  tenant_id: string;
  group_name: string;
  key: string;
  created_at: string;
}

export interface EnrollmentRow {
  token_hash: string;
  tenant_id: string;
  expires_at: string;
  used_at: string | null;
}

/** A cluster member, heartbeating. */
export interface NodeRow {
  node_id: string;
  advertise: string;
  started_at: string;
  heartbeat_at: string;
  /**
   * The newest relay header version the member reads (2: it answers `TETHER-RELAY OK`); null for
   * a member of a release before the column, which reads version 1 only.
   */
  relay_version: number | null;
}

/** The cluster's forward directory: which member serves (tenant, label) on which port. */
export interface DirectoryRow {
  tenant_id: string;
  label: string;
  node_id: string;
  port: number;
  connectors: number;
  updated_at: string;
}

/**
 * Traffic policy of a tenant (label '') or of one of its repositories (label = "<group>/<repo>").
 * Null = no limit. Rates in bytes per second, amounts in bytes.
 */
export interface LimitsRow {
  tenant_id: string;
  label: string;
  /** "round-robin" | "least-connections"; tenant rows only. */
  balance: string | null;
  /** Bytes per second towards the repository. */
  bandwidth_up: number | null;
  /** Bytes per second from the repository. */
  bandwidth_down: number | null;
  max_connections: number | null;
  traffic_limit: number | null;
  /** "month" (calendar month, UTC) or "<n>d" (the last n days, today included). */
  traffic_period: string | null;
  updated_at: string;
}

/**
 * Source-address allowlists of a tenant (label '') or of one of its repositories: CIDR blocks as
 * a JSON array of text. `allow_from` bounds the callers of every front door (null = anyone);
 * `tunnel_from` (tenant rows only) bounds where its connectors may log in from.
 */
export interface AllowlistRow {
  tenant_id: string;
  label: string;
  allow_from: string | null;
  tunnel_from: string | null;
  updated_at: string;
}

/** Bytes one (tenant, repository) moved on one UTC day. */
export interface TrafficRow {
  tenant_id: string;
  label: string;
  /** YYYY-MM-DD (UTC). */
  day: string;
  bytes_in: number;
  bytes_out: number;
}

export interface TrafficTotal {
  tenant_id: string;
  label: string;
  bytes_in: number;
  bytes_out: number;
}

/** A repository the operator proposed for a tenant's connectors (managed repositories). */
export interface ManagedRepoRow {
  tenant_id: string;
  label: string;
  uri: string;
  created_at: string;
  updated_at: string;
}

/** What one connector made of a proposal: serving, refused, withdrawn or shadowed (+ why). */
export interface ManagedStateRow {
  tenant_id: string;
  label: string;
  /** The connector: its key fingerprint and host name ("SHA256:… host"). */
  connector: string;
  fingerprint: string;
  hostname: string | null;
  /** The URI the connector answered about. */
  uri: string;
  state: string;
  reason: string | null;
  updated_at: string;
}

export interface LeaseRange {
  low: number;
  high: number;
}

/** One forwarded connection's audit record (table connection_audit). */
export interface ConnectionRecordRow {
  tenant_id: string;
  label: string;
  front_door: string;
  source: string;
  identity: string | null;
  connector: string | null;
  bytes_in: number;
  bytes_out: number;
  /** ISO times. */
  opened_at: string;
  ended_at: string;
  duration_ms: number;
  /** closed | error | refused */
  outcome: string;
  reason: string | null;
}

export interface Store {
  readonly kind: 'sqlite' | 'postgres';
  close(): Promise<void>;

  getTenant(id: string): Promise<TenantRow | undefined>;
  listTenants(): Promise<TenantRow[]>;
  /** Inserts; returns false when it exists already. */
  insertTenant(row: TenantRow): Promise<boolean>;
  setQuota(id: string, quota: number, now: string): Promise<boolean>;
  /** Deletes the tenant with its keys, leases, group keys, enrollments, limits and traffic counters. */
  deleteTenant(id: string): Promise<boolean>;

  listKeys(tenantId: string): Promise<KeyRow[]>;
  /** Replaces every key of the tenant with these. */
  replaceKeys(tenantId: string, keys: KeyRow[]): Promise<void>;
  addKey(key: KeyRow): Promise<void>;
  deleteKey(tenantId: string, fingerprint: string): Promise<boolean>;

  getLease(tenantId: string, label: string): Promise<LeaseRow | undefined>;
  listLeases(tenantId?: string): Promise<LeaseRow[]>;
  /**
   * The tenant's lease for this label, allocating the lowest free port of the range on first
   * use. Returns undefined when the range is exhausted. Never gives one port two owners.
   */
  leasePort(tenantId: string, label: string, range: LeaseRange, now: string): Promise<LeaseRow | undefined>;
  updateLease(tenantId: string, label: string, meta: RepoMeta | null, now: string): Promise<void>;
  /** Marks the lease established (it carried a connection or stayed up long) unless it is already. */
  establishLease(tenantId: string, label: string, now: string): Promise<void>;
  /** Releases one lease; returns false when there was none. */
  deleteLease(tenantId: string, label: string): Promise<boolean>;
  /**
   * Releases the leases not listed as live that were last used before `before`, and the
   * never-established ones last used before `unusedBefore`; returns the released rows.
   */
  expireLeases(
    cutoffs: { before: string; unusedBefore: string },
    live: Array<{ tenant_id: string; label: string }>,
  ): Promise<LeaseRow[]>;

  /**
   * Runs `fn` in one transaction that holds the tenant's lock: PostgreSQL takes a transaction
   * advisory lock on the tenant (every cluster member waits for it), SQLite's one connection is
   * exclusive for the transaction. `fn` must use only the store it is given.
   */
  withTenantLock<T>(tenantId: string, fn: (tx: Store) => Promise<T>): Promise<T>;
  /**
   * Labels of the tenant in the forward directory, served by members heartbeating since
   * `liveAfter` other than `exceptNode` (the caller, who knows its own forwards better).
   */
  directoryLabels(tenantId: string, liveAfter: string, exceptNode?: string): Promise<string[]>;
  /** Inserts or refreshes one directory row (a member's claim of a forward it is about to serve). */
  claimDirectory(row: DirectoryRow): Promise<void>;

  getGroupKey(tenantId: string, group: string): Promise<GroupKeyRow | undefined>;
  listGroupKeys(tenantId: string): Promise<GroupKeyRow[]>;
  /** Creates the group key if missing; returns the stored one. */
  ensureGroupKey(row: GroupKeyRow): Promise<GroupKeyRow>;
  setGroupKey(row: GroupKeyRow): Promise<void>;
  deleteGroupKey(tenantId: string, group: string): Promise<boolean>;

  insertEnrollment(row: EnrollmentRow): Promise<void>;
  /** Marks the token used if it exists, is unused and unexpired; returns its tenant. */
  consumeEnrollment(tokenHash: string, now: string): Promise<string | undefined>;
  /** Deletes enrollment tokens that expired before `now` (used or not); returns how many. */
  pruneEnrollments(now: string): Promise<number>;

  /** Small key/value settings shared by every member (cluster identity). */
  getSetting(name: string): Promise<string | undefined>;
  /** Sets the value unless one exists; returns the stored value. */
  initSetting(name: string, value: string): Promise<string>;

  /** Registers or refreshes a cluster member. */
  heartbeat(node: NodeRow): Promise<void>;
  listNodes(): Promise<NodeRow[]>;
  /** Replaces this member's rows of the forward directory. */
  setNodeForwards(nodeId: string, rows: DirectoryRow[]): Promise<void>;
  /**
   * Writes this member's rows (insert or refresh) and deletes its other rows older than
   * `staleBefore`: a claim written after the caller took its snapshot survives.
   */
  publishNodeForwards(nodeId: string, rows: DirectoryRow[], staleBefore: string): Promise<void>;
  listDirectory(): Promise<DirectoryRow[]>;
  /** Removes members (and their directory rows) silent since `before`. */
  reapNodes(before: string): Promise<string[]>;

  /** Traffic policies, of one tenant or of all. */
  listLimits(tenantId?: string): Promise<LimitsRow[]>;
  /** Inserts or replaces one policy row; a row without any limit is deleted. */
  setLimits(row: LimitsRow): Promise<void>;
  /** Adds byte counts to the counters of their day (one row per tenant, label and day). */
  addTraffic(rows: TrafficRow[]): Promise<void>;
  /** Bytes per (tenant, label) over the days from `sinceDay` (YYYY-MM-DD) on. */
  trafficSince(sinceDay: string, tenantId?: string): Promise<TrafficTotal[]>;
  /** Deletes counters of the days before `beforeDay`; returns how many rows went. */
  pruneTraffic(beforeDay: string): Promise<number>;

  /** Appends connection audit records (one statement per batch). */
  addConnectionRecords(rows: ConnectionRecordRow[]): Promise<void>;
  /** A tenant's records, newest first, ended at or after `since` (ISO) when given. */
  listConnectionRecords(q: {
    tenantId: string;
    since?: string;
    limit: number;
  }): Promise<ConnectionRecordRow[]>;
  /** Deletes records that ended before `before` (ISO); returns how many went. */
  pruneConnectionRecords(before: string): Promise<number>;
  /** Source-address allowlists, of one tenant or of all. */
  listAllowlists(tenantId?: string): Promise<AllowlistRow[]>;
  /** Inserts or replaces one allowlist row; a row with neither list is deleted. */
  setAllowlist(row: AllowlistRow): Promise<void>;

  /** Integrity check of the underlying database ("ok" when sound). */
  integrityCheck(): Promise<string>;

  /** Managed repositories proposed for a tenant, by label. */
  listManagedRepos(tenantId: string): Promise<ManagedRepoRow[]>;
  /** Inserts or replaces a proposal; the states reported for another URI are deleted. */
  putManagedRepo(row: ManagedRepoRow): Promise<void>;
  /** Deletes a proposal and its states; false when there was none. */
  deleteManagedRepo(tenantId: string, label: string): Promise<boolean>;
  listManagedStates(tenantId: string): Promise<ManagedStateRow[]>;
  /** Inserts or replaces one connector's state of a proposal. */
  putManagedState(row: ManagedStateRow): Promise<void>;
  /** Deletes the states of a label except the newest `keep`; returns how many went. */
  pruneManagedStates(tenantId: string, label: string, keep: number): Promise<number>;
}
