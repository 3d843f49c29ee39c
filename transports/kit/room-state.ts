/** The kit's state of one MUC room of one user session (the rooms, room-*.ts, keep it in UserSession.rooms). */
import type { LegacyRoom, Occupant, TextMessage } from './adapter.js';

export interface RoomState {
  /** Bare room JID. */
  jid: string;
  room: LegacyRoom;
  /** Own nick (the requested one until the network confirms). */
  nick: string;
  joined: boolean;
  occupants: Map<string, Occupant>;
  subject: string | null;
  subjectBy: string | null;
  /** Joined resources (full JID → the nick it asked for). */
  resources: Map<string, string>;
  /** Resources waiting for roomJoined (full JID → requested nick). */
  pending: Map<string, string>;
  password: string | undefined;
  /** Own messages sent, waiting for the network's echo (adapters that echo). */
  echoes: { text: string; id: string | undefined }[];
  joinTimer: NodeJS.Timeout | null;
  /** Joined before the connection dropped: rejoined after the reconnect, however many attempts it takes. */
  rejoin?: boolean;
  /** Staying connected: lines said while no resource was in the room, for the next join (memory only). */
  backlog?: { nick: string; msg: TextMessage; at: Date }[];
}
