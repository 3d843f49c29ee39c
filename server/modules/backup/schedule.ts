/**
 * The daily backup inside the server (P14, backups.schedule 'daily'): a backup when the newest is
 * about a day old, then rotation.
 */
import path from 'node:path';
import type { GatehouseModule } from '../../core/context.js';
import type { Config } from '../../config/index.js';
import type { Clock } from '../../../shared/clock.js';
import type { Logger } from '../../../shared/logger.js';
import { loadBackupKey } from './crypto.js';
import { createBackup, type BackupResult } from './backup.js';
import { listBackups, rotateBackups } from './files.js';
import { backupCommands } from './cli-backup.js';
import { backupsConfigSection } from './config.js';

const DAY_MS = 24 * 3600_000;
/** How often the schedule looks whether a backup is due (also the delay before the first look). */
export const CHECK_INTERVAL_MS = 10 * 60_000;
/** A backup is due when the newest one is this old: a day less the check interval, so it does not drift later. */
const DUE_AFTER_MS = DAY_MS - CHECK_INTERVAL_MS;

export interface SchedulerDeps {
  config: Config;
  clock: Clock;
  log: Logger;
  /** Defaults to loadBackupKey({ config }). */
  key?: () => Buffer | null;
}

/**
 * Makes a backup when the newest file in backups.dir is about a day old (or there is none), then
 * deletes all but the backups.keep newest. The time comes from the injected clock, so tests move
 * the clock and call tick() instead of waiting a day.
 */
export class BackupScheduler {
  private running: Promise<BackupResult | null> | null = null;
  private lastFailureAt = 0;

  constructor(private readonly deps: SchedulerDeps) {}

  /** Whether a backup is due now. */
  async due(): Promise<boolean> {
    const now = this.deps.clock.now().getTime();
    // After a failure, try again at the next check, not in a tight loop.
    if (this.lastFailureAt && now - this.lastFailureAt < CHECK_INTERVAL_MS) return false;
    const newest = (await listBackups(this.deps.config.backups.dir)).at(-1);
    return !newest || now - newest.createdAt.getTime() >= DUE_AFTER_MS;
  }

  /** One look at the schedule: makes (and rotates) a backup if one is due; returns it, or null. */
  tick(): Promise<BackupResult | null> {
    if (this.running) return this.running;
    const run = (async () => {
      if (!(await this.due())) return null;
      return this.runNow();
    })();
    this.running = run.finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** Resolves when no backup of this scheduler is running. */
  async idle(): Promise<void> {
    await this.running?.catch(() => undefined);
  }

  /** Makes a backup now (and rotates). Failures are logged and returned as null. */
  async runNow(): Promise<BackupResult | null> {
    const { config, clock, log } = this.deps;
    const started = Date.now();
    try {
      const key = (this.deps.key ?? (() => loadBackupKey({ config })))();
      const result = await createBackup({ storage: config.storage, dir: config.backups.dir, key, now: clock.now() });
      const removed = await rotateBackups(config.backups.dir, config.backups.keep);
      this.lastFailureAt = 0;
      log.info('backup written', {
        file: path.basename(result.file),
        size: result.bytes,
        encrypted: key !== null,
        ms: Date.now() - started,
        rotated: removed.length,
      });
      return result;
    } catch (err) {
      this.lastFailureAt = clock.now().getTime();
      log.error('backup failed', { error: err instanceof Error ? err.message : String(err) });
      return null;
    }
  }
}

/** Schedules of the servers running in this process (tests start several). */
const active = new Map<BackupScheduler, NodeJS.Timeout>();

/** P14: the daily backup inside the server (backups.schedule 'daily'). */
export function createBackupModule(): GatehouseModule {
  let offInForce = (): void => {};
  return {
    name: 'backup',
    config: backupsConfigSection,
    clauses: ['P14'],
    specs: [],
    commands: { cli: Object.values(backupCommands) },
    load(ctx) {
      const { config, log } = ctx;
      const start = (): void => {
        if (config.storage.type === 'sqlite' && config.storage.path === ':memory:') {
          log.warn('backups are scheduled but the database is in memory: no backups are made');
          return;
        }
        const scheduler = new BackupScheduler({ config, clock: ctx.clock, log: log.child('backup') });
        // In a cluster one node makes the daily backup of the shared database: the one holding the task.
        const timer = setInterval(() => {
          if (ctx.services.get('cluster')?.holds('backup') ?? true) void scheduler.tick();
        }, CHECK_INTERVAL_MS);
        timer.unref();
        active.set(scheduler, timer);
      };
      if (config.backups.schedule === 'daily') return start();
      // Daily backups held back until their privacy-policy change takes effect (P22).
      offInForce = ctx.hooks.on('config/in-force', ({ before, after }) => {
        if (before.backups.schedule !== 'daily' && after.backups.schedule === 'daily') start();
      });
    },
    async unload() {
      offInForce();
      const schedulers = [...active.keys()];
      for (const [s, timer] of active) {
        clearInterval(timer);
        active.delete(s);
      }
      // A backup in progress finishes first (storage closes after unload).
      await Promise.allSettled(schedulers.map((s) => s.idle()));
    },
  };
}
