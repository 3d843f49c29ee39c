import type { Config } from '../config/index.js';
import type { Storage } from '../../storage/types.js';
import type { Clock } from '../../shared/clock.js';
import type { Logger } from '../../shared/logger.js';
import type { HookBus } from './hooks.js';
import type { ConfigInForce } from './config-in-force.js';
import type { Router } from './router.js';
import type { SessionRegistry } from './session.js';
import type { Element } from '../../shared/xml/element.js';
import type { DiscoRegistry } from './disco-registry.js';
import type { ServiceKey, ServiceRegistry } from './services.js';
import type { RetentionClass } from './retention-class.js';
import type { AnySchema, Section } from '../../shared/schema-kit.js';
import type { ModuleStorage } from '../../storage/module-storage.js';
import type { Account } from '../../storage/types.js';

/** Everything a stream or module may use; built once in main.ts. */
export interface ServerContext {
  /**
   * The configuration in force: the file's, except parts held back until their privacy-policy
   * change takes effect (P22). A live view (core/config-in-force.ts): read it when acting.
   */
  readonly config: Config;
  /** The file's configuration (`configInForce.file`) and the one in force; the policy module sets it. */
  readonly configInForce: ConfigInForce;
  readonly storage: Storage;
  readonly router: Router;
  readonly sessions: SessionRegistry;
  readonly hooks: HookBus;
  readonly clock: Clock;
  readonly log: Logger;
  readonly disco: DiscoRegistry;
  /** The modules of this server, in load order (assembled by main.ts). */
  readonly modules: readonly GatehouseModule[];
  /** What the modules offer each other (see services.ts). */
  readonly services: ServiceRegistry;
  readonly startedAt: Date;
}

/** Information about a client connection before it is bound, for pre-auth handlers. */
export interface StreamInfo {
  readonly id: string;
  readonly ip: string;
  readonly host: string;
  readonly secure: boolean;
  readonly authenticated: boolean;
  send(stanza: Element): void;
}

/**
 * The module contract: everything a feature adds, said in one place (like Prosody's `module:` API
 * and ejabberd's gen_mod). main.ts assembles one fresh instance per server from modules/index.ts,
 * checks `needs` against the `provides` of the modules before it, and calls load(); docs and the
 * retention sweeper read the declarations. See docs/architecture.md "A feature is a module".
 */
export interface GatehouseModule {
  readonly name: string;
  /** Specifications implemented, for the generated features documentation. */
  readonly specs: readonly SpecRef[];
  /** Privacy clauses (../shared/PRIVACY.md IDs, e.g. 'P4') the module makes true. */
  readonly clauses?: readonly string[];
  /** Services this module puts on `ctx.services` in load() (possibly only when configured on). */
  readonly provides?: readonly ServiceKey[];
  /** Services it takes from `ctx.services`: a module listed before it must provide each. */
  readonly needs?: readonly ServiceKey[];
  /** The retention classes of the records this module stores; the sweeper runs exactly these. */
  readonly retention?: readonly RetentionClass[];
  /**
   * The module's own tables: entities, migrations and its repository (storage/module-storage.ts).
   * main.ts opens the database with every loaded module's storage, so its migrations run with the
   * core's; in load() the module gets its repository with `ctx.storage.repository(storage)`.
   */
  readonly storage?: ModuleStorage;
  /** The module's part of an account's data in the XEP-0227 export and import (P23). */
  readonly accountData?: AccountDataPart;
  // `commands?: ModuleCommands`, the module's administrative commands, is declared in
  // commands/command.ts, and `admin?: ModuleAdmin`, its pages on the admin HTTP interface, in
  // admin/contract.ts (both merged into this interface, as services are into Services), so that
  // their definitions, which take a ServerContext, are not imported back from here.
  /**
   * The configuration section the module reads, declared next to it with section()
   * (shared/schema-kit.ts) in a file of its own (modules/offline-config.ts beside a module file,
   * config.ts in a module folder), so the schema does not load the module's code; server/config/schema.ts composes it with fieldOf() where it belongs in
   * the documented order, and the module reads it typed as `ctx.config[key]`.
   */
  readonly config?: Section<string, AnySchema>;
  /**
   * Runs before any module's load(), in module order: for what the other modules' load() must
   * already see (the policy module puts the configuration in force here, P22).
   */
  prepare?(ctx: ServerContext): void | Promise<void>;
  /** Hooks go on `ctx.hooks.on(event, handler, phase)` with a named phase (core/hooks.ts PHASES). */
  load(ctx: ServerContext): void | Promise<void>;
  unload?(): void | Promise<void>;
}

export interface SpecRef {
  /** e.g. 'RFC 6121' or 'XEP-0030' */
  id: string;
  /** Version of the XEP implemented, or the sections for an RFC. */
  version?: string;
  status: 'complete' | 'partial';
  note?: string;
}

/**
 * How a module's stored data for one account goes into and comes back from the XEP-0227 export
 * (the `<user/>` element of the account). The export module calls every loaded module's part, so a
 * module's data is exported, imported and (through its tables' foreign keys) erased with the
 * account without the export module knowing it.
 */
export interface AccountDataPart {
  /** Child elements of the account's `<user/>` for this module's data (none when it stores nothing for it). */
  export(storage: Storage, account: Account): Promise<Element[]>;
  /** Whether a child element of an imported `<user/>` is this module's to import. */
  claims(element: Element): boolean;
  /**
   * Checks the claimed elements of one account before anything is written: returns one line per
   * problem (empty when they can be imported), without secrets or message bodies.
   */
  check(elements: readonly Element[]): string[];
  /** Stores the claimed elements for a newly imported account (already checked). */
  import(storage: Storage, account: Account, elements: readonly Element[]): Promise<void>;
}
