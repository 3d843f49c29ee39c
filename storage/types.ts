/**
 * What the server stores, as repositories. Modules use only these interfaces; the TypeORM
 * implementation lives beside them. Accounts are keyed by normalised bare JID (P1): (username, host).
 * Every account-owned row references the account and is deleted with it (P23).
 */
import type { Kind } from './db.js';
import type { ModuleStorage } from './module-storage.js';

export interface ScramVerifier {
  /** 'SHA-1' | 'SHA-256' */
  hash: 'SHA-1' | 'SHA-256';
  salt: Buffer;
  iterations: number;
  storedKey: Buffer;
  serverKey: Buffer;
}

/** One host's accounts by stored SCRAM verifier. */
export interface VerifierCoverage {
  host: string;
  accounts: number;
  /** Accounts with a verifier for the hash (0 when none). */
  withHash: Record<ScramVerifier['hash'], number>;
}

export interface Account {
  id: number;
  username: string;
  host: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  /** When the inactivity warning was sent (P4), null if never. */
  warnedAt: Date | null;
}

export interface AccountRepository {
  /** Creates the account with its verifiers; returns null if it already exists. */
  create(username: string, host: string, verifiers: ScramVerifier[], now: Date): Promise<Account | null>;
  get(username: string, host: string): Promise<Account | null>;
  getVerifiers(accountId: number): Promise<ScramVerifier[]>;
  setVerifiers(accountId: number, verifiers: ScramVerifier[]): Promise<void>;
  /**
   * Adds the verifiers whose hash the account has none for; never replaces one (a password change
   * racing with it wins). Returns the hashes added.
   */
  addVerifiers(accountId: number, verifiers: ScramVerifier[]): Promise<ScramVerifier['hash'][]>;
  /** Per host: how many accounts there are and how many have a verifier for each hash (admin counts). */
  verifierCoverage(): Promise<VerifierCoverage[]>;
  touch(accountId: number, now: Date): Promise<void>;
  setWarnedAt(accountId: number, at: Date | null): Promise<void>;
  /** Deletes the account and every row it owns. Returns false if it did not exist. */
  delete(accountId: number): Promise<boolean>;
  /** Admin use only (P16/P17): never exposed to ordinary users. */
  list(host?: string): Promise<Account[]>;
  count(host?: string): Promise<number>;
  /** Accounts whose last use (or creation, if never used) is before `before`. */
  listInactiveSince(before: Date, limit: number): Promise<Account[]>;
}

export type Subscription = 'none' | 'to' | 'from' | 'both';

export interface RosterItem {
  /** Normalised bare JID of the contact. */
  jid: string;
  name: string | null;
  subscription: Subscription;
  /** Outbound subscription request pending ("Pending Out"). */
  ask: boolean;
  /** Inbound subscription request pending ("Pending In"); the stored request stanza, if any. */
  pendingIn: boolean;
  /** Pre-approved inbound subscription (RFC 6121 3.4). */
  approved: boolean;
  groups: string[];
}

/** What an account stores in one place: rows and their UTF-8 bytes (for quotas). */
export interface StorageUsage {
  items: number;
  bytes: number;
}

export interface RosterRepository {
  list(accountId: number): Promise<RosterItem[]>;
  get(accountId: number, contact: string): Promise<RosterItem | null>;
  /** Insert or replace the item; returns the new roster version. */
  put(accountId: number, item: RosterItem): Promise<string>;
  /** Remove the item; returns the new roster version (or the current one if nothing was removed). */
  remove(accountId: number, contact: string): Promise<string>;
  version(accountId: number): Promise<string>;
  /**
   * Items with an inbound subscription request pending (pendingIn), all of them or only those
   * whose contact is in `domain` (the domain itself or a JID at it).
   */
  countPendingIn(accountId: number, domain?: string): Promise<number>;
  /** Every (account, item) whose contact is `contact`: used when a local account is deleted. */
  listByContact(contact: string): Promise<{ accountId: number; username: string; host: string; item: RosterItem }[]>;
}

export interface OfflineMessage {
  id: number;
  /** The full stanza as XML text, exactly as it will be delivered (without delay element). */
  stanza: string;
  receivedAt: Date;
}

export interface OfflineRepository {
  /** Durable when the promise resolves (committed; on SQLite with WAL and synchronous=FULL). */
  store(accountId: number, stanza: string, receivedAt: Date): Promise<number>;
  list(accountId: number): Promise<OfflineMessage[]>;
  count(accountId: number): Promise<number>;
  /** Stored messages and the UTF-8 bytes of their stanzas. */
  usage(accountId: number): Promise<StorageUsage>;
  delete(accountId: number, ids: number[]): Promise<void>;
  /** Removes and returns (id, accountId, stanza) for messages received before `before`, at most `limit`. */
  takeExpired(before: Date, limit: number): Promise<{ id: number; accountId: number; stanza: string; receivedAt: Date }[]>;
}

export interface KeyValueRepository {
  /** XML text or null. */
  get(accountId: number, key: string): Promise<string | null>;
  set(accountId: number, key: string, xml: string): Promise<void>;
  delete(accountId: number, key: string): Promise<void>;
  /** Stored items and the UTF-8 bytes of their keys and XML, leaving out the keys in `except`. */
  usage(accountId: number, except?: string[]): Promise<StorageUsage>;
}

export interface Storage {
  readonly kind: Kind;
  /**
   * The repository of a feature module's own tables (core/context.ts GatehouseModule `storage`),
   * built once per storage; an error when the storage was opened without that module's tables.
   */
  repository<R>(storage: ModuleStorage<R>): R;
  accounts: AccountRepository;
  roster: RosterRepository;
  offline: OfflineRepository;
  /** vCard-temp per account, key 'vcard' (XEP-0054). */
  vcards: KeyValueRepository;
  /** Private XML storage (XEP-0049), key = "{namespace} name" of the stored element. */
  privateXml: KeyValueRepository;
  /** Server-side per-account state that users never read directly (e.g. key 'last': last logout). */
  accountState: KeyValueRepository;
  /** Published versions of the generated privacy policy (P22). */
  policyVersions: PolicyVersionRepository;
  /** Failed logins, delivery failures and temporary blocks (P7, P8, P13). */
  privacyLogs: PrivacyLogRepository;
  /** Session records (P6) and anonymous statistics (P12). */
  statistics: StatisticsRepository;
  /** Transport registrations, the credential vault (P9) and the connection audit log (P10). */
  transports: TransportRepository;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Published versions of the privacy policy (P22): the TypeORM implementation is repos/policy-versions.ts

export interface PolicyVersion {
  id: number;
  /** SHA-256 (hex) of the rendered texts: equal hashes, equal policy. */
  hash: string;
  /** The rendered policy as JSON (facts and the document in every language); see server/modules/policy. */
  document: string;
  announcedAt: Date;
  /** From when this version is in force. */
  effectiveAt: Date;
  /** Set when the version was announced on short notice for technical reasons. */
  technicalReason: string | null;
}

export type NewPolicyVersion = Omit<PolicyVersion, 'id'>;

export interface PolicyVersionRepository {
  /** Every version, oldest (lowest id) first. */
  list(): Promise<PolicyVersion[]>;
  /**
   * Adds a version if the newest stored version is still `afterId` (null: none stored yet), so two
   * processes cannot both add "the next" version. Returns null if another version came first.
   */
  add(version: NewPolicyVersion, afterId: number | null): Promise<PolicyVersion | null>;
}

// ---------------------------------------------------------------------------------------------
// Failed logins, delivery failures and temporary blocks (P7, P8, P13): the TypeORM implementation is repos/privacy-logs.ts

export type FailedLoginKind = 'auth' | 'register';

export interface FailedLoginRecord {
  at: Date;
  ip: string;
  /** The host (or component domain) the attempt was made on. */
  host: string;
  /** The attempted username (localpart), null when none was given or usable. */
  username: string | null;
  /** SASL mechanism, 'XEP-0077' for registration, 'XEP-0114 handshake' for components. */
  mechanism: string;
  kind: FailedLoginKind;
  /** The SASL failure or stanza error condition returned. */
  condition: string;
}

export interface DeliveryFailureRecord {
  at: Date;
  /** Bare JID of the sender. */
  from: string;
  /** Bare JID of the intended recipient. */
  to: string;
  /** 'message' | 'presence' | 'iq' */
  kind: string;
  condition: string;
}

export type BlockKind = 'ip' | 'account';

export interface AuthBlock {
  kind: BlockKind;
  /** An IPv4 address, an IPv6 /64 ('2001:db8:1:2::/64') or a bare JID. */
  subject: string;
  createdAt: Date;
  expiresAt: Date;
  /** Failures counted when the block was set. */
  failures: number;
}

export interface PrivacyLogRepository {
  addFailedLogin(record: FailedLoginRecord): Promise<void>;
  /** Newest first. */
  listFailedLogins(opts?: { since?: Date; ip?: string; limit?: number }): Promise<(FailedLoginRecord & { id: number })[]>;
  addDeliveryFailure(record: DeliveryFailureRecord): Promise<void>;
  /** Newest first. */
  listDeliveryFailures(opts?: { since?: Date; limit?: number }): Promise<(DeliveryFailureRecord & { id: number })[]>;

  /** Inserts or replaces the block of (kind, subject). */
  putBlock(block: AuthBlock): Promise<void>;
  getBlock(kind: BlockKind, subject: string): Promise<AuthBlock | null>;
  /** Blocks still in force at `now` (every stored block without it), soonest expiry first. */
  listBlocks(now?: Date): Promise<AuthBlock[]>;
  /** Removes one block; false if there was none. */
  liftBlock(kind: BlockKind, subject: string): Promise<boolean>;
  /** Removes every block; returns how many there were. */
  liftAllBlocks(): Promise<number>;

  // ---- retention (one bounded batch per call; the sweeper loops) ----
  deleteFailedLoginsBefore(before: Date, limit: number): Promise<number>;
  countFailedLoginsBefore(before: Date): Promise<number>;
  deleteDeliveryFailuresBefore(before: Date, limit: number): Promise<number>;
  countDeliveryFailuresBefore(before: Date): Promise<number>;
  /** Blocks that expired before `now` or were created before `createdBefore`. */
  deleteStaleBlocks(now: Date, createdBefore: Date, limit: number): Promise<number>;
  countStaleBlocks(now: Date, createdBefore: Date): Promise<number>;
  /** Offline messages received before `before` (P5 dry run). */
  countOfflineBefore(before: Date): Promise<number>;
  /** Accounts whose last use (or creation) is before `before`, by id after `afterId` (a cursor). */
  inactiveAccounts(before: Date, afterId: number, limit: number): Promise<Account[]>;
  /** username and host of the given account ids (missing ids are absent). */
  accountJids(ids: number[]): Promise<Map<number, { username: string; host: string }>>;
  /**
   * After deletions: on SQLite, checkpoint the WAL and truncate it, so that the old images of
   * deleted rows do not linger in the -wal file (with PRAGMA secure_delete they are then gone
   * from the disk). A no-op elsewhere.
   */
  flushDeleted(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Session records (P6) and anonymous statistics (P12): the TypeORM implementation is repos/statistics.ts

export type Resolution = 'minute' | 'hour' | 'day';

export interface SessionRecord {
  /** Full JID of the session. */
  jid: string;
  /** Bare JID (the account), for deleting an account's records. */
  account: string;
  ip: string;
  secure: boolean;
  startedAt: Date;
  endedAt: Date;
  stanzasIn: number;
  stanzasOut: number;
  bytesIn: number;
  bytesOut: number;
  /** Stream error condition the session ended with, if any. */
  closeReason: string | null;
}

export interface StatPoint {
  series: string;
  resolution: Resolution;
  bucketStart: Date;
  value: number;
}

/** A point to write: 'add' adds to a stored value (counters), 'set' replaces it (gauges, rollups). */
export interface StatWrite extends StatPoint {
  mode: 'add' | 'set';
}

export interface ListPointsOptions {
  resolution: Resolution;
  /** Inclusive. */
  since?: Date;
  /** Exclusive. */
  until?: Date;
  /** Exact series names; absent = every series. */
  series?: string[];
}

export interface StatisticsRepository {
  /** P6: stores the record of an ended session. */
  addSessionRecord(record: SessionRecord): Promise<void>;
  /** Admin/test use: records that ended at or after `since`, oldest first. */
  listSessionRecords(opts?: { since?: Date; limit?: number }): Promise<SessionRecord[]>;
  /**
   * P13 retention: deletes records whose session ended before `before` (at most `limit` if given,
   * oldest first); returns how many.
   */
  deleteSessionRecordsBefore(before: Date, limit?: number): Promise<number>;
  /** P13 retention, dry run: how many records ended before `before`. */
  countSessionRecordsBefore(before: Date): Promise<number>;
  /** P23: deletes every record of an account (bare JID); returns how many. */
  deleteSessionRecordsOf(account: string): Promise<number>;

  /** Writes points in one transaction: 'add' sums into an existing point, 'set' replaces it. */
  writePoints(points: StatWrite[]): Promise<void>;
  /** Points of one resolution, ordered by bucket then series. */
  listPoints(opts: ListPointsOptions): Promise<StatPoint[]>;
  /** Every series name stored (at a resolution, or at any). */
  seriesNames(resolution?: Resolution): Promise<string[]>;
  /** The latest bucket start stored at a resolution, or null. */
  latestBucket(resolution: Resolution): Promise<Date | null>;
  /** The earliest bucket start stored at a resolution, or null. */
  earliestBucket(resolution: Resolution): Promise<Date | null>;
  /** Deletes points of a resolution whose bucket starts before `before`; returns how many. */
  deletePointsBefore(resolution: Resolution, before: Date): Promise<number>;
}

// ---------------------------------------------------------------------------------------------
// Transport registrations, the credential vault (P9) and the connection audit log (P10): the TypeORM implementation is repos/transports.ts

export type TransportAuditEvent = 'connecting' | 'connected' | 'disconnected' | 'auth-failed' | 'error';

export interface TransportRegistration {
  network: string;
  /** Normalised bare JID of the XMPP user. */
  userJid: string;
  /** Non-secret per-user settings (ad-hoc command), by name. */
  settings: Record<string, string>;
  /** Bare JIDs of the legacy contacts the user has through the transport (for <remove/>). */
  contacts: string[];
  createdAt: Date;
  updatedAt: Date;
}

/** One encrypted credentials record (AES-256-GCM), bound to (user JID, network) by its additional data. */
export interface VaultRecord {
  network: string;
  userJid: string;
  /** Which key encrypted it: the first 8 bytes of SHA-256(key), hex. */
  keyId: string;
  nonce: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
  updatedAt: Date;
}

export interface TransportAuditEntry {
  id?: number;
  at: Date;
  userJid: string;
  network: string;
  /** The foreign account (nick, user name, user id); never a secret. */
  account: string | null;
  /** The foreign server (IRC server, homeserver). */
  server: string | null;
  event: TransportAuditEvent;
  reason: string | null;
}

export interface TransportAuditQuery {
  userJid?: string;
  network?: string;
  /** Inclusive. */
  since?: Date;
  /** Exclusive. */
  until?: Date;
  limit?: number;
}

export interface TransportRepository {
  getRegistration(network: string, userJid: string): Promise<TransportRegistration | null>;
  listRegistrations(network: string): Promise<TransportRegistration[]>;
  /** Creates or replaces a registration and its credentials record, in one transaction. */
  saveRegistration(
    reg: { network: string; userJid: string; settings: Record<string, string>; contacts: string[] },
    credentials: VaultRecord,
    now: Date,
  ): Promise<void>;
  /** Changes settings and/or contacts; false if there is no such registration. */
  updateState(network: string, userJid: string, patch: { settings?: Record<string, string>; contacts?: string[] }, now: Date): Promise<boolean>;
  /** Replaces the credentials record of an existing registration; false if there is none. */
  updateCredentials(record: VaultRecord): Promise<boolean>;
  /** Deletes the registration, its credentials, its sync states and its secret states; false if there was none. */
  deleteRegistration(network: string, userJid: string): Promise<boolean>;
  /**
   * The adapter's secret state of a registration for `server` (sealed by the vault like the
   * credentials; Matrix: the end-to-end encryption store); null if none. `network`/`userJid` of
   * the record are the registration's.
   */
  getSecretState(network: string, userJid: string, server: string): Promise<VaultRecord | null>;
  /** Creates or replaces a secret state (ciphertext at most 12 MB); false if there is no such registration. */
  saveSecretState(server: string, record: VaultRecord): Promise<boolean>;
  /** Every secret state of a network (key rotation), with its server key. */
  listSecretStates(network: string): Promise<{ serverKey: string; record: VaultRecord }[]>;
  /** Key rotation of secret states, as reencrypt does for credentials (all or nothing). */
  reencryptSecretStates(records: { serverKey: string; record: VaultRecord; expectKeyId: string }[]): Promise<void>;
  /** The adapter's sync state of a registration for `server` ('' when the network has one server); null if none. */
  getSyncState(network: string, userJid: string, server: string): Promise<string | null>;
  /** Creates or replaces a sync state (at most 1,000,000 characters); false if there is no such registration. */
  saveSyncState(network: string, userJid: string, server: string, state: string, now: Date): Promise<boolean>;
  getCredentials(network: string, userJid: string): Promise<VaultRecord | null>;
  listCredentials(network?: string): Promise<VaultRecord[]>;
  /** Key ids in use, each with its number of records. */
  keyIdCounts(network?: string): Promise<Map<string, number>>;
  /**
   * Key rotation: replaces every given record in one transaction. Each stored record must still
   * carry `expectKeyId`; if one does not (changed meanwhile), nothing is written and this throws.
   */
  reencrypt(records: { record: VaultRecord; expectKeyId: string }[]): Promise<void>;
  appendAudit(entry: TransportAuditEntry): Promise<void>;
  /** Oldest first. */
  queryAudit(q: TransportAuditQuery): Promise<TransportAuditEntry[]>;
  countAuditBefore(before: Date): Promise<number>;
  /** P13: deletes audit rows older than `before` (at most `limit` of them, oldest first, if given); returns how many. */
  deleteAuditBefore(before: Date, limit?: number): Promise<number>;
}
