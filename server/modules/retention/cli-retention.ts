/**
 * `gatehouse retention run [--dry-run]`: works on the database directly, so it also works while
 * the server runs. It sweeps the retention classes of the modules the command surface hands it
 * (CommandContext.modules), declared by the retention module (retention.ts).
 */
import { CONFIG_FLAG, commandSet, configFrom, withStorage } from '../../cli/kit.js';
import { HookBus } from '../../core/hooks.js';
import { LocalSessionRegistry } from '../../core/session.js';
import { systemClock } from '../../../shared/clock.js';
import { Logger } from '../../../shared/logger.js';
import { retentionClassesOf } from '../../core/module.js';
import { runRetention } from './sweep.js';
import type { RetentionEnv } from '../../core/retention-class.js';

export const retentionCommands = commandSet(
  {
    name: 'retention run',
    summary: 'delete everything whose retention period is over (--dry-run: only count)',
    description: 'Runs every retention class once, as the server does on its schedule: one line per class with its privacy clause and what was deleted. Exit code 1 when a class failed.',
    flags: [{ name: 'dry-run', type: 'boolean', doc: 'only count what would be deleted' }, CONFIG_FLAG],
    server: 'no',
    async run(args, ctx) {
      const config = configFrom(args);
      const dryRun = args.flags.has('dry-run');
      const log = new Logger({ level: 'warn', format: 'text' });
      const results = await withStorage(config, ctx, (storage) => {
        const env: RetentionEnv = { config, storage, log, clock: systemClock, hooks: new HookBus(), sessions: new LocalSessionRegistry(), retentionClasses: retentionClassesOf(ctx.modules) };
        return runRetention(env, { dryRun });
      });
      const width = Math.max(...results.map((r) => r.name.length), 10);
      for (const r of results) {
        const what = r.error ? `FAILED: ${r.error}` : `${r.count} ${dryRun ? 'would be deleted' : 'deleted'}`;
        console.log(`${r.clause.padEnd(4)} ${r.name.padEnd(width)}  ${what}\t(${r.description})`);
      }
      if (dryRun) console.log('dry run: nothing was deleted');
      return results.some((r) => r.error) ? 1 : 0;
    },
  },
);
