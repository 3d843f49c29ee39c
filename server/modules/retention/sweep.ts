/**
 * One run of retention classes (retention.ts describes the sweeper): the server's schedule and
 * `gatehouse retention run` both call runRetention.
 */
import type { Config } from '../../config/index.js';
import { DEFAULT_RETENTION_BATCH, type RetentionClass, type RetentionEnv, type RetentionRunOptions } from '../../core/retention-class.js';

export interface RetentionResult {
  name: string;
  clause: string;
  description: string;
  count: number;
  dryRun: boolean;
  /** Set when the class failed (the others still ran). */
  error?: string;
}

/**
 * Runs every class of the environment (those of the loaded modules; or the given ones) once. One
 * failing class does not stop the others.
 */
export async function runRetention(
  env: RetentionEnv,
  opts: { now?: Date; dryRun?: boolean; batch?: number; classes?: RetentionClass[] } = {},
): Promise<RetentionResult[]> {
  const now = opts.now ?? env.clock.now();
  const run: RetentionRunOptions = { dryRun: opts.dryRun ?? false, batch: opts.batch ?? DEFAULT_RETENTION_BATCH };
  const results: RetentionResult[] = [];
  // Modules that hold data briefly in memory (last-use times) write it out first.
  await env.hooks.emit('retention/sweeping', {});
  const classes = opts.classes ?? env.retentionClasses;
  if (!classes) throw new Error('no retention classes given (the modules declare them in `retention`)');
  for (const cls of classes) {
    const result: RetentionResult = { name: cls.name, clause: cls.clause, description: safeDescribe(cls, env.config), count: 0, dryRun: run.dryRun };
    try {
      result.count = await cls.run(env, now, run);
      if (result.count > 0 && !run.dryRun) env.log.info('retention: deleted expired records', { class: cls.name, clause: cls.clause, count: result.count });
    } catch (err) {
      result.error = err instanceof Error ? err.message : String(err);
      env.log.error('retention class failed', { class: cls.name, error: result.error });
    }
    results.push(result);
  }
  if (!run.dryRun && results.some((r) => r.count > 0)) {
    // Deleted means gone from the files too, not only from the tables (SQLite WAL).
    await env.storage.privacyLogs?.flushDeleted().catch((err) => env.log.warn('retention: could not checkpoint the database', { error: err instanceof Error ? err.message : String(err) }));
  }
  return results;
}

function safeDescribe(cls: RetentionClass, config: Config): string {
  try {
    return cls.describe(config);
  } catch {
    return cls.name;
  }
}

