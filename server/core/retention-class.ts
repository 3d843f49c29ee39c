/**
 * What a retention class is (PRIVACY.md: every stored record with personal data has one). A module
 * lists the classes it owns in `retention`; the sweeper runs the classes of the loaded modules,
 * `gatehouse retention run` those of the modules its command context carries (every module of
 * modules/index.ts). Nothing registers itself by being imported.
 */
import type { Config } from '../config/index.js';
import type { Storage } from '../../storage/types.js';
import type { Clock } from '../../shared/clock.js';
import type { Logger } from '../../shared/logger.js';
import type { HookBus } from './hooks.js';
import type { Router } from './router.js';
import type { SessionRegistry } from './session.js';

/** What a retention class may use. A ServerContext is one; the CLI builds one without a router. */
export interface RetentionEnv {
  readonly config: Config;
  readonly storage: Storage;
  readonly log: Logger;
  readonly clock: Clock;
  readonly hooks: HookBus;
  readonly sessions: SessionRegistry;
  /** Absent in the CLI. */
  readonly router?: Router;
  /** The classes a run without an explicit list covers: those of the loaded modules. */
  readonly retentionClasses?: readonly RetentionClass[];
}

export interface RetentionRunOptions {
  /** Count what would be deleted, delete nothing. */
  dryRun: boolean;
  /** Rows per batch (one transaction each). */
  batch: number;
}

export interface RetentionClass {
  /** Unique, kebab-case, e.g. 'offline-messages'. */
  readonly name: string;
  /** The PRIVACY.md clause, e.g. 'P5'. */
  readonly clause: string;
  /** One line for people: what is deleted and when, from the live configuration. */
  describe(config: Config): string;
  /** Deletes (or in a dry run counts) what has expired at `now`; returns the count. Idempotent. */
  run(env: RetentionEnv, now: Date, opts: RetentionRunOptions): Promise<number>;
}

export const DEFAULT_RETENTION_BATCH = 500;

/**
 * Calls `step(limit)` (which deletes at most `limit` rows and returns how many it deleted) until it
 * deletes fewer than `limit`, yielding to the event loop between batches. Returns the total.
 */
export async function inBatches(batch: number, step: (limit: number) => Promise<number>): Promise<number> {
  const limit = Number.isSafeInteger(batch) && batch > 0 ? batch : DEFAULT_RETENTION_BATCH;
  let total = 0;
  for (;;) {
    const n = await step(limit);
    total += n;
    if (n < limit) return total;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}
