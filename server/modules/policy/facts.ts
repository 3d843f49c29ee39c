/**
 * What the privacy policy states (P22), taken from the configuration: the texts (texts-de.ts,
 * texts-en.ts) are written from these facts only, and render.ts turns them into documents.
 */
import type { Config } from '../../config/index.js';

/** Everything from the configuration that the policy states. Changing any of it changes the policy. */
export interface PolicyFacts {
  /** Domains served. */
  hosts: string[];
  /** policy.contact */
  contact: string | null;
  /** How many administrator JIDs the configuration names (the JIDs themselves are not published). */
  adminCount: number;
  /** SCRAM hashes verifiers are stored for (auth.hashes). */
  passwordHashes: string[];
  /** SASL PLAIN is offered (only ever over TLS). */
  allowPlain: boolean;
  /** c2s.requireEncryption */
  clientTlsRequired: boolean;
  /** tls.minVersion, e.g. "1.2" */
  tlsMinVersion: string;
  /** Milliseconds (statistics: null = no limit). */
  retention: {
    inactiveAccounts: number;
    inactiveWarning: number;
    offlineMessages: number;
    detailedLogs: number;
    statistics: number | null;
    /** Uploaded files (retention.uploads); absent in versions stored before uploads existed. */
    uploads?: number;
  };
  /** HTTP File Upload (XEP-0363) is offered (upload.enabled, on an HTTPS listener); absent in versions stored before it existed. */
  uploads?: boolean;
  /**
   * The group chat service (muc.enabled): how long a room's messages stay in memory and after how
   * long unused persistent rooms are deleted; absent when not offered or in versions stored before it existed.
   */
  groupChats?: { historyMaxAge: number; unusedRooms: number };
  /**
   * Explicit subscriptions to PEP nodes are stored (pep.subscriptions), with how long one of a JID
   * on another server is kept (pep.remoteSubscriptionLifetime); absent when off or in versions
   * stored before they existed.
   */
  pepSubscriptions?: { remoteLifetime: number };
  /** offline.maxPerUser (0: offline messages are not stored). */
  offlineMaxPerUser: number;
  backups: { schedule: 'daily' | 'off'; keep: number };
  /** Gateway (component) domains, sorted. */
  gateways: string[];
  federation: {
    /** An s2s listener is configured. */
    enabled: boolean;
    requireEncryption: boolean;
    requireValidCertificates: boolean;
    /** Non-empty: federation only with these domains. */
    allow: string[];
  };
}

export function factsFromConfig(config: Config): PolicyFacts {
  return {
    hosts: config.hosts.map((h) => h.domain),
    contact: config.policy.contact?.trim() || null,
    adminCount: config.admins.length,
    passwordHashes: [...config.auth.hashes].sort(),
    allowPlain: config.c2s.allowPlain,
    clientTlsRequired: config.c2s.requireEncryption,
    tlsMinVersion: config.tls.minVersion.replace(/^TLSv/, ''),
    retention: {
      inactiveAccounts: config.retention.inactiveAccounts,
      inactiveWarning: config.retention.inactiveWarning,
      offlineMessages: config.retention.offlineMessages,
      detailedLogs: config.retention.detailedLogs,
      statistics: config.retention.statistics,
      uploads: config.retention.uploads,
    },
    uploads: config.upload.enabled && config.listen.https.length > 0,
    ...(config.muc.enabled ? { groupChats: { historyMaxAge: config.muc.historyMaxAge, unusedRooms: config.muc.unusedRooms } } : {}),
    ...(config.pep.subscriptions ? { pepSubscriptions: { remoteLifetime: config.pep.remoteSubscriptionLifetime } } : {}),
    offlineMaxPerUser: config.offline.maxPerUser,
    backups: { schedule: config.backups.schedule, keep: config.backups.keep },
    gateways: config.components.map((c) => c.domain).sort(),
    federation: {
      enabled: config.listen.s2s.length > 0,
      requireEncryption: config.s2s.requireEncryption,
      requireValidCertificates: config.s2s.requireValidCertificates,
      allow: [...config.s2s.allow].sort(),
    },
  };
}
