/**
 * The retention class of the chat service's stored data: persistent rooms (configuration and
 * affiliations, never messages) that nobody has entered for `muc.unusedRooms` are deleted, their
 * affiliations with them. A room's history is memory only (history.ts) and no retention class
 * of storage: it lives at most `muc.historyMaxAge` and never past a restart.
 */
import type { RetentionClass } from '../../core/retention-class.js';
import { inBatches } from '../../core/retention-class.js';
import { formatDurationWords } from '../../../shared/format.js';
import { mucStorage } from './storage.js';

declare module '../../core/hooks.js' {
  interface HookEvents {
    /** Persistent rooms deleted by the retention sweep (their row ids): a running service drops them from memory. */
    'muc/rooms-expired': { roomIds: number[] };
  }
}

export const mucRoomsClass: RetentionClass = {
  name: 'muc-rooms',
  clause: 'P11',
  describe: (config) =>
    `persistent group chats (XEP-0045): their configuration and the affiliations of their members, deleted when the room is destroyed or ${formatDurationWords(config.muc.unusedRooms)} after anyone was last in it, and an account's affiliations with the account; messages are kept in memory only, at most ${formatDurationWords(config.muc.historyMaxAge)}`,
  async run(env, now, opts) {
    const repo = env.storage.repository(mucStorage);
    const before = new Date(now.getTime() - env.config.muc.unusedRooms);
    if (opts.dryRun) return repo.countUnusedBefore(before);
    const n = await inBatches(opts.batch, async (limit) => {
      const ids = await repo.unusedBefore(before, limit);
      for (const id of ids) await repo.deleteRoom(id);
      if (ids.length > 0) await env.hooks.emit('muc/rooms-expired', { roomIds: ids });
      return ids.length;
    });
    if (n > 0) env.log.info('unused persistent rooms deleted', { count: n });
    return n;
  },
};
