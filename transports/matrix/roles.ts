/**
 * Matrix members as MUC occupants: power levels become roles and affiliations (owner at 100,
 * admin at 50; moderator who may kick; visitor who may not send messages), display names
 * become nicks.
 */
import type * as sdk from 'matrix-js-sdk';
import type { LegacyContact, Occupant, OccupantAffiliation, OccupantRole } from '../kit/adapter.js';
import { replaceNonXmlChars } from '../../shared/xml/element.js';

type Json = Record<string, unknown>;

/** A member of a room as an occupant, by the room's current power levels. */
export function occupantOf(room: sdk.Room, userId: string, contact: LegacyContact): Occupant {
  const member = room.getMember(userId);
  const pl = (room.currentState.getStateEvents('m.room.power_levels', '')?.getContent() ?? {}) as Json;
  const users = (pl.users ?? {}) as Record<string, number>;
  const level = typeof users[userId] === 'number' ? users[userId]! : typeof pl.users_default === 'number' ? pl.users_default : 0;
  const events = (pl.events ?? {}) as Record<string, number>;
  const speak = typeof events['m.room.message'] === 'number' ? events['m.room.message']! : typeof pl.events_default === 'number' ? pl.events_default : 0;
  const kick = typeof pl.kick === 'number' ? pl.kick : 50;
  const role: OccupantRole = level >= kick && level >= 50 ? 'moderator' : level >= speak ? 'participant' : 'visitor';
  const affiliation: OccupantAffiliation = level >= 100 ? 'owner' : level >= 50 ? 'admin' : 'member';
  return { nick: nickOf(member, userId), role, affiliation, contact };
}

/**
 * A member's name as a MUC nick, which becomes a JID resourcepart: what XML cannot carry becomes
 * U+FFFD (as the serialiser writes it, so occupants are known by the nick the XMPP user sees), the
 * other controls a resourcepart refuses become spaces (line breaks, tabs) or U+FFFD (DEL).
 */
export function nickOf(member: sdk.RoomMember | null | undefined, userId: string): string {
  const name = replaceNonXmlChars(member?.name ?? '').replace(/[\t\n\r]+/g, ' ').replace(/\x7f/g, '\ufffd').trim();
  return name || userId;
}
