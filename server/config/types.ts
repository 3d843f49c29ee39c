/**
 * The validated configuration: every default filled in, every path absolute, durations in
 * milliseconds, sizes in bytes, domains and JIDs normalised (lower case), CIDRs as address/prefix.
 *
 * Derived from the schema (server/config/schema.ts), which is the only declaration of each
 * option: its documentation there tells what a value means. The names below exist so that code
 * can say which part of the configuration it takes.
 */
import type { Infer } from '../../shared/schema-kit.js';
import type { configSchema } from './schema.js';

export type Config = Infer<typeof configSchema>;

export type HostConfig = Config['hosts'][number];
/** Who may register accounts in-band on a host. */
export type RegistrationPolicy = HostConfig['registration'];
export type CertKeyPair = NonNullable<HostConfig['tls']>;
export type TlsConfig = Config['tls'];
export type ListenConfig = Config['listen'];
export type ListenAddress = ListenConfig['c2s'][number];
export type C2sConfig = Config['c2s'];
export type AuthConfig = Config['auth'];
/** `url` contains credentials: never log it. */
export type StorageConfig = Config['storage'];
export type OfflineConfig = Config['offline'];
export type PrivateStorageConfig = Config['privateStorage'];
export type SubscriptionsConfig = Config['subscriptions'];
export type RegistrationLimitConfig = Config['registrationLimit'];
export type ServerInfoConfig = Config['server'];
export type LogConfig = Config['log'];
export type RetentionConfig = Config['retention'];
export type LoginGuardConfig = Config['loginGuard'];
export type BackupsConfig = Config['backups'];
export type ComponentConfig = Config['components'][number];
export type S2sConfig = Config['s2s'];
export type AdminConfig = Config['admin'];
export type PolicyConfig = Config['policy'];
