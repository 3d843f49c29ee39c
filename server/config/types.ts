/**
 * The validated configuration: every default filled in, every path absolute, durations in
 * milliseconds, sizes in bytes, domains and JIDs normalised (lower case).
 */

/** Who may register accounts in-band on a host. `{ allow }` lists CIDRs, each as `address/prefix`. */
export type RegistrationPolicy = 'closed' | 'open' | 'loopback' | { allow: string[] };

export interface CertKeyPair {
  /** Absolute path of an existing PEM certificate (chain) file. */
  cert: string;
  /** Absolute path of an existing PEM private key file. */
  key: string;
}

export interface HostConfig {
  /** Normalised (lower case) domain. */
  domain: string;
  registration: RegistrationPolicy;
  /** Certificate for this host; falls back to the top-level `tls`. */
  tls?: CertKeyPair;
}

export interface TlsConfig {
  /** Absolute path, or null: a self-signed certificate is generated under `<dataDir>/certs`. */
  cert: string | null;
  /** Absolute path; null exactly when `cert` is null. */
  key: string | null;
  minVersion: 'TLSv1.2' | 'TLSv1.3';
  /** OpenSSL cipher list; absent = Node's default. */
  ciphers?: string;
  /** Milliseconds to finish a TLS handshake on a direct-TLS listener. */
  handshakeTimeout: number;
}

export interface ListenAddress {
  host: string;
  /** 0 = a random free port (tests). */
  port: number;
  /** CIDRs (address/prefix) of proxies that must start each connection with a PROXY header. */
  proxyProtocol: string[];
}

export interface ListenConfig {
  c2s: ListenAddress[];
  c2sDirectTls: ListenAddress[];
  components: ListenAddress[];
  s2s: ListenAddress[];
  admin: ListenAddress[];
}

export interface C2sConfig {
  /** Authentication only over TLS. */
  requireEncryption: boolean;
  /** Offer SASL PLAIN (never without TLS). */
  allowPlain: boolean;
  /** Bytes. */
  maxStanzaBytes: number;
  /** Bytes, before authentication. */
  maxStanzaBytesPreAuth: number;
  maxDepth: number;
  maxAttributes: number;
  /** Milliseconds. */
  idlePingAfter: number;
  /** Milliseconds. */
  pingTimeout: number;
  /** Milliseconds; 0 disables XEP-0198 resumption. */
  resumptionTimeout: number;
  /** Milliseconds. */
  authTimeout: number;
  /** Bytes. */
  maxSendBuffer: number;
  /** Per IPv4 address or IPv6 /64. */
  maxConnectionsPerIp: number;
  /** Open client connections (both client listeners together). */
  maxConnections: number;
}

export interface AuthConfig {
  scramIterations: number;
  /** Non-empty, without duplicates. */
  hashes: ('SHA-1' | 'SHA-256')[];
  channelBindingDowngrade: 'allow' | 'reject';
}

export type StorageConfig =
  | {
      type: 'sqlite';
      /** Absolute path, or `:memory:`. */
      path: string;
      url?: undefined;
      migrateOnStart: boolean;
    }
  | {
      type: 'mysql' | 'postgres';
      path?: undefined;
      /** mysql:// or mariadb:// for mysql; postgres:// or postgresql:// for postgres. Contains credentials: never log it. */
      url: string;
      migrateOnStart: boolean;
    };

export interface OfflineConfig {
  /** 0 = offline messages are not stored. */
  maxPerUser: number;
  /** Bytes of stored stanzas per account. */
  maxBytesPerUser: number;
}

export interface PrivateStorageConfig {
  /** Bytes (keys and XML) per account. */
  maxBytesPerUser: number;
}

export interface SubscriptionsConfig {
  /** Unanswered inbound subscription requests per account. */
  maxPendingPerUser: number;
  /** The same, per remote domain. */
  maxPendingPerDomain: number;
}

export interface RegistrationLimitConfig {
  /** Successful in-band registrations per address (IPv6: per /64) within window; 0 = unlimited. */
  maxPerAddress: number;
  /** Milliseconds. */
  window: number;
  /** CIDRs, normalised to address/prefix. */
  exempt: string[];
}

export interface ServerInfoConfig {
  name: string;
  hideVersion: boolean;
  hideOs: boolean;
}

export interface LogConfig {
  level: 'debug' | 'info' | 'warn' | 'error';
  format: 'text' | 'json';
  /** Absolute path, or null for standard output. */
  file: string | null;
}

export interface RetentionConfig {
  /** Milliseconds. */
  inactiveAccounts: number;
  /** Milliseconds (before deletion; less than inactiveAccounts). */
  inactiveWarning: number;
  /** Milliseconds. */
  offlineMessages: number;
  /** Milliseconds. */
  detailedLogs: number;
  /** Milliseconds, or null = unlimited. */
  statistics: number | null;
}

export interface LoginGuardConfig {
  /** Milliseconds. */
  window: number;
  delayAfter: number;
  /** Milliseconds. */
  delayBase: number;
  /** Milliseconds. */
  delayMax: number;
  blockAfter: number;
  accountBlockAfter: number;
  /** Milliseconds. */
  blockFor: number;
  /** CIDRs, normalised to address/prefix. */
  trustedProxies: string[];
}

export interface BackupsConfig {
  keep: number;
  /** Absolute path. */
  dir: string;
  schedule: 'daily' | 'off';
  /** Absolute path, or null. */
  encryptionKeyFile: string | null;
}

export interface ComponentConfig {
  /** Normalised (lower case) domain. */
  domain: string;
  /** Never log it. */
  secret: string;
}

export interface S2sConfig {
  requireEncryption: boolean;
  requireValidCertificates: boolean;
  /** Normalised domains. */
  allow: string[];
  /** Normalised domains. */
  deny: string[];
  /** Normalised domain → where to connect instead of DNS (IPv6 hosts without brackets). */
  static: Record<string, { host: string; port: number }>;
  /** Absolute path, or null. */
  caFile: string | null;
  /** Milliseconds. */
  connectTimeout: number;
  /** Milliseconds. */
  idleTimeout: number;
  /** Open inbound server connections. */
  maxConnections: number;
}

export interface AdminConfig {
  /** Never log it. */
  metricsToken: string | null;
  tls: 'auto' | 'off';
  /** Open connections, all admin listeners together. */
  maxConnections: number;
  /** Per IPv4 address or IPv6 /64. */
  maxConnectionsPerIp: number;
  /** CIDRs whose X-Forwarded-For header names the client. */
  trustedProxies: string[];
}

export interface PolicyConfig {
  contact: string | null;
  language: 'de' | 'en';
}

export interface Config {
  /** Absolute path. */
  dataDir: string;
  /** At least one; domains unique. */
  hosts: HostConfig[];
  /** Normalised bare JIDs. */
  admins: string[];
  tls: TlsConfig;
  listen: ListenConfig;
  c2s: C2sConfig;
  auth: AuthConfig;
  storage: StorageConfig;
  offline: OfflineConfig;
  privateStorage: PrivateStorageConfig;
  subscriptions: SubscriptionsConfig;
  registrationLimit: RegistrationLimitConfig;
  server: ServerInfoConfig;
  log: LogConfig;
  retention: RetentionConfig;
  loginGuard: LoginGuardConfig;
  backups: BackupsConfig;
  components: ComponentConfig[];
  s2s: S2sConfig;
  /** Transports run by the server as child processes. */
  transports: { name: string; config: string }[];
  admin: AdminConfig;
  policy: PolicyConfig;
}
