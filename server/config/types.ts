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
/** `url` contains credentials: never log it. */
export type StorageConfig = Config['storage'];
