/**
 * P4: the last use of each account, so unused accounts can be found and deleted. Updated when a
 * resource binds (a login) and when a session ends, so that `last_used_at` is the end of the last
 * session. Nothing else about the session is stored here (P6 statistics live elsewhere).
 */
import type { GatehouseModule } from '../core/context.js';

/** Updates in flight (across every server in this process; tests run several). */
const pending = new Set<Promise<void>>();

export const accountActivityModule: GatehouseModule = {
  name: 'account-activity',
  specs: [],
  clauses: ['P4'],
  load({ hooks, storage, clock, log }) {
    const track = (work: Promise<unknown>): void => {
      const p: Promise<void> = work.then(
        () => {},
        (err) => log.warn('could not record account use', { error: err instanceof Error ? err.message : String(err) }),
      );
      pending.add(p);
      void p.then(() => pending.delete(p));
    };
    hooks.on('session/bound', ({ account }) => {
      track(storage.accounts.touch(account.id, clock.now()));
    });
    hooks.on('session/closed', ({ session }) => {
      // If the account was deleted meanwhile, the update matches no row.
      if (session.account) track(storage.accounts.touch(session.account.id, clock.now()));
    });
  },
  /** Lets updates started by the last sessions finish before storage closes. */
  async unload() {
    await Promise.allSettled([...pending]);
  },
};
