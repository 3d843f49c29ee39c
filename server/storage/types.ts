/**
 * What the server stores, as repositories. Modules use only these interfaces; the TypeORM
 * implementation lives beside them. Accounts are keyed by normalised bare JID (P1): (username, host).
 * Every account-owned row references the account and is deleted with it (P23).
 */

export interface ScramVerifier {
  /** 'SHA-1' | 'SHA-256' */
  hash: 'SHA-1' | 'SHA-256';
  salt: Buffer;
  iterations: number;
  storedKey: Buffer;
  serverKey: Buffer;
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
  readonly kind: 'sqlite' | 'mysql' | 'postgres';
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
  policyVersions: import('./repos/policy-versions.js').PolicyVersionRepository;
  /** Failed logins, delivery failures and temporary blocks (P7, P8, P13). */
  privacyLogs: import('./repos/privacy-logs.js').PrivacyLogRepository;
  /** Session records (P6) and anonymous statistics (P12). */
  statistics: import('./repos/statistics.js').StatisticsRepository;
  /** Transport registrations, the credential vault (P9) and the connection audit log (P10). */
  transports: import('./repos/transports.js').TransportRepository;
  close(): Promise<void>;
}
