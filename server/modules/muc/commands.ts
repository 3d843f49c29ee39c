/**
 * `gatehouse muc list` and `gatehouse muc destroy ROOM [--reason TEXT]`: they ask the running
 * server (the rooms live in its memory). The list names rooms and counts occupants; it names no
 * occupant.
 */
import { CONFIG_FLAG, commandSet, configFrom, UsageError, type FlagDefinition } from '../../cli/kit.js';
import { controlRequest } from '../../admin/control.js';
import { ControlError, type ControlHandler } from '../../commands/command.js';
import type { MucService, RoomSummary } from './service.js';

const JSON_FLAG: FlagDefinition = { name: 'json', type: 'boolean', doc: 'print JSON (the admin HTTP API answers the same)' };


export function roomSummaries(s: MucService): RoomSummary[] {
  return [...s.rooms.values()]
    .map((r) => ({ jid: r.jid, name: r.config.name, occupants: r.occupants.size, persistent: r.config.persistent, public: r.config.public, membersOnly: r.config.membersOnly, locked: r.locked }))
    .sort((a, b) => (a.jid < b.jid ? -1 : a.jid > b.jid ? 1 : 0));
}

export const mucCommands = commandSet(
  {
    name: 'muc list',
    summary: 'the group chat rooms of the running server with their occupant counts',
    description: 'Asks the running server for its rooms (XEP-0045 multi-user chat): address, name, number of occupants and type (persistent or temporary, public or hidden, members-only); in cluster mode the rooms of every node, each with the node running it. Names no occupant.',
    flags: [CONFIG_FLAG, JSON_FLAG],
    server: 'yes',
    control: 'muc.list',
    http: { audit: () => null },
    async run(args) {
      const config = configFrom(args);
      const { rooms } = (await controlRequest(config.dataDir, 'muc.list')) as { rooms: RoomSummary[] };
      if (args.flags.has('json')) console.log(JSON.stringify({ rooms }, null, 2));
      else if (rooms.length === 0) console.log('no rooms');
      else {
        for (const r of rooms) {
          const kind = [r.persistent ? 'persistent' : 'temporary', r.public ? 'public' : 'hidden', ...(r.membersOnly ? ['members-only'] : []), ...(r.locked ? ['locked'] : [])].join(', ');
          console.log(`${r.jid.padEnd(40)} ${String(r.occupants).padStart(5)} occupant${r.occupants === 1 ? ' ' : 's'}  ${kind}${r.name ? `  "${r.name}"` : ''}${r.node ? `  on ${r.node}` : ''}`);
        }
      }
      return 0;
    },
  },
  {
    name: 'muc destroy',
    summary: 'destroy a group chat room: its occupants are told, its configuration deleted',
    description: 'Every occupant gets the room-destroyed presence of XEP-0045 10.9, with the reason given; a persistent room\'s configuration and affiliations are deleted.',
    args: [{ name: 'ROOM', doc: 'the room\'s address, room@conference.example.org' }],
    flags: [CONFIG_FLAG, { name: 'reason', type: 'string', value: 'TEXT', doc: 'the reason the occupants are shown' }, { name: 'alternate', type: 'string', value: 'JID', doc: 'a room the occupants are pointed to instead' }],
    server: 'yes',
    control: 'muc.destroy',
    async run(args) {
      const config = configFrom(args);
      const room = args.positional[0];
      if (!room) throw new UsageError('give the room to destroy (room@conference.example.org)');
      if (args.positional.length > 1) throw new UsageError(`unexpected argument: ${args.positional[1]}`);
      const reason = args.flags.get('reason');
      const alternate = args.flags.get('alternate');
      if (reason === true) throw new UsageError('--reason needs a text');
      if (alternate === true) throw new UsageError('--alternate needs a room address');
      const out = (await controlRequest(config.dataDir, 'muc.destroy', { room, ...(reason ? { reason } : {}), ...(alternate ? { alternate } : {}) })) as { destroyed: string; occupants: number };
      console.log(`destroyed ${out.destroyed} (${out.occupants} occupant${out.occupants === 1 ? '' : 's'} told)`);
      return 0;
    },
  },
);

/** Destroys a room this node runs (any node's control socket reaches it in a cluster); null if not here. */
export async function destroyHere(s: MucService, jid: string, reason?: string, alternate?: string): Promise<{ destroyed: string; occupants: number } | null> {
  const room = s.rooms.get(jid);
  if (!room) return null;
  const occupants = room.occupants.size;
  await s.serial.run(room.jid, () => s.destroy(room, reason, alternate));
  s.ctx.log.info('administrator destroyed a room', { room: room.jid });
  return { destroyed: room.jid, occupants };
}

export function mucControl(service: () => MucService | null): Record<string, ControlHandler> {
  const need = () => {
    const s = service();
    if (!s) throw new ControlError('the chat service is not running');
    return s;
  };
  return {
    'muc.list': {
      summary: 'the rooms with their occupant counts',
      handler: async () => {
        const s = need();
        return { rooms: s.cluster ? await s.cluster.allRooms() : roomSummaries(s) };
      },
    },
    'muc.destroy': {
      summary: 'destroy a room (args: room, reason?, alternate?)',
      handler: async (args) => {
        const s = need();
        const jid = typeof args.room === 'string' ? args.room.toLowerCase() : '';
        const reason = typeof args.reason === 'string' ? args.reason.slice(0, 1000) : undefined;
        const alternate = typeof args.alternate === 'string' ? args.alternate.slice(0, 600) : undefined;
        const out = s.cluster ? await s.cluster.destroy(jid, reason, alternate) : await destroyHere(s, jid, reason, alternate);
        if (!out) throw new ControlError(`no room ${jid.slice(0, 300)}`);
        return out;
      },
    },
  };
}
