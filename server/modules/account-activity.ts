/**
 * P4: the last use of each account, so unused accounts can be found and deleted. Recorded when a
 * resource binds (a login) and when a session ends, so that `last_used_at` is the end of the last
 * session. Nothing else about the session is stored here (P6 statistics live elsewhere).
 *
 * The times wait in memory and are written together at most FLUSH_MS later, in one commit: P4
 * counts in months, and a login should not wait for a disk write of its own. A crash loses at most
 * that window's times, which only makes an account look idle since its previous use; the retention
 * sweep flushes first ('retention/sweeping') and never deletes an account with a live session.
 */
import type { GatehouseModule } from '../core/context.js';

declare module '../core/hooks.js' {
  interface HookEvents {
    /** The retention sweep is about to look at stored data: write what is still held in memory. */
    'retention/sweeping': Record<string, never>;
  }
}

/** How long a last-use time may wait in memory before it is written. */
export const FLUSH_MS = 2000;

/** A factory: each server gets its own instance (call it inside allModules()). */
export function createAccountActivityModule(): GatehouseModule {
  let flush: (() => Promise<void>) | null = null;
  /** Writes in flight, awaited at unload before storage closes. */
  const pending = new Set<Promise<void>>();
  return {
    name: 'account-activity',
    specs: [],
    clauses: ['P4'],
    load({ hooks, storage, clock, log }) {
      const due = new Map<number, Date>();
      let timer: NodeJS.Timeout | null = null;
      const write = (): Promise<void> => {
        if (timer) clearTimeout(timer);
        timer = null;
        const batch = [...due];
        due.clear();
        // Issued together, so the updates share one commit (Db.group).
        const work = Promise.all(batch.map(([id, at]) => storage.accounts.touch(id, at))).then(
          () => {},
          (err) => log.warn('could not record account use', { error: err instanceof Error ? err.message : String(err) }),
        );
        pending.add(work);
        void work.then(() => pending.delete(work));
        return work;
      };
      const record = (accountId: number): void => {
        // If the account is deleted meanwhile, the update matches no row.
        due.set(accountId, clock.now());
        timer ??= setTimeout(() => void write(), FLUSH_MS).unref();
      };
      flush = write;
      hooks.on('session/bound', ({ account }) => record(account.id));
      hooks.on('session/closed', ({ session }) => {
        if (session.account) record(session.account.id);
      });
      hooks.on('retention/sweeping', () => write());
    },
    /** Writes what is held and lets the writes finish before storage closes. */
    async unload() {
      await flush?.();
      flush = null;
      await Promise.allSettled([...pending]);
    },
  };
}
