import type { Config } from '../config/index.js';
import type { Storage } from '../storage/types.js';
import type { Clock } from '../../shared/clock.js';
import type { Logger } from '../../shared/logger.js';
import type { HookBus } from './hooks.js';
import type { Router } from './router.js';
import type { SessionRegistry } from './session.js';
import type { Element } from '../../shared/xml/element.js';
import type { DiscoRegistry } from './disco-registry.js';

/** Everything a stream or module may use; built once in main.ts. */
export interface ServerContext {
  readonly config: Config;
  readonly storage: Storage;
  readonly router: Router;
  readonly sessions: SessionRegistry;
  readonly hooks: HookBus;
  readonly clock: Clock;
  readonly log: Logger;
  readonly disco: DiscoRegistry;
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

/** A feature module: one protocol or policy concern, wired through the hook bus. */
export interface GatehouseModule {
  readonly name: string;
  /** Specifications implemented, for the generated features documentation. */
  readonly specs: readonly SpecRef[];
  /** Privacy clauses (../shared/PRIVACY.md IDs, e.g. 'P4') the module makes true. */
  readonly clauses?: readonly string[];
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
