/**
 * What a Matrix session keeps between runs so that the next login resumes with /sync?since=
 * instead of a full initial sync (which, for an account in hundreds of rooms, is slow and large).
 *
 * The kit stores the session's 'syncState' (transport_sync_state, deleted with the registration)
 * and passes it back as LoginRequest.state. For Matrix it is a small JSON document:
 *   { v: 1, user, since, filter?, direct?, rooms: [{ id, m, name?, alias?, enc?, joined?, invited?, heroes? }] }
 * - since: the sync token up to which the kit has every event; filter: the id of the uploaded sync
 *   filter (reused, not uploaded again); direct: the m.direct account data (user ID to room IDs,
 *   rooms the user is in only);
 * - per room: the ID, the user's membership (join/invite), its name and canonical alias, whether it
 *   is encrypted, its member counts, and for rooms without a name or alias the few "heroes" (user
 *   IDs with their display names) that tell a direct chat and name it.
 * No message, topic or member list is kept (P5, P19): the member list and the rest of a room's
 * state are fetched when the user joins the room over XMPP (see MatrixRooms).
 *
 * The SDK is handed these facts as a "saved sync" (ResumeStore.getSavedSync), as its own
 * persistent stores do, and starts with /sync?since=. An older plain sync token (what the
 * session stored before) is still understood: it resumes the event stream, with a full sync.
 */
import * as sdk from 'matrix-js-sdk';
import type { ISavedSync } from 'matrix-js-sdk/lib/store/index.js';

type Json = Record<string, unknown>;

export interface RoomFacts {
  id: string;
  m: 'join' | 'invite';
  name?: string;
  alias?: string;
  enc?: 1;
  joined?: number;
  invited?: number;
  /** User ID to display name ('' when none), for rooms without name or alias. */
  heroes?: Record<string, string>;
}

export interface ResumeState {
  v: 1;
  user: string;
  since: string;
  filter?: string;
  direct?: Record<string, string[]>;
  rooms: RoomFacts[];
}

/** Heroes kept per unnamed room (the spec's summary gives up to 5). */
const MAX_HEROES = 5;

/** The stored state as the session can use it: the position, and (new format) the room facts. */
export function parseResumeState(state: string | undefined, userId: string): { since: string; saved: ResumeState | null } | null {
  if (!state) return null;
  if (!state.startsWith('{')) return { since: state, saved: null };
  let v: unknown;
  try {
    v = JSON.parse(state);
  } catch {
    return null;
  }
  const s = v as Partial<ResumeState>;
  if (!s || typeof s !== 'object' || s.v !== 1 || typeof s.since !== 'string' || !s.since) return null;
  // Stored for another Matrix account (the registration was changed): only the position is kept out too.
  if (s.user !== userId || !Array.isArray(s.rooms)) return null;
  const rooms = s.rooms.filter((r): r is RoomFacts => !!r && typeof r === 'object' && typeof r.id === 'string' && (r.m === 'join' || r.m === 'invite'));
  return {
    since: s.since,
    saved: {
      v: 1,
      user: userId,
      since: s.since,
      ...(typeof s.filter === 'string' && s.filter ? { filter: s.filter } : {}),
      ...(s.direct && typeof s.direct === 'object' ? { direct: s.direct } : {}),
      rooms,
    },
  };
}

function stateContent(room: sdk.Room, type: string): Json | undefined {
  return room.currentState.getStateEvents(type, '')?.getContent() as Json | undefined;
}

/** The facts of the client's rooms, with the position `since`, as the string the kit stores. */
export function encodeResumeState(client: sdk.MatrixClient, userId: string, since: string, filter: string | null): string {
  const rooms: RoomFacts[] = [];
  const inRoom = new Set<string>();
  for (const room of client.getRooms()) {
    const m = room.getMyMembership();
    if (m !== 'join' && m !== 'invite') continue;
    inRoom.add(room.roomId);
    const facts: RoomFacts = { id: room.roomId, m };
    const name = stateContent(room, 'm.room.name')?.name;
    if (typeof name === 'string' && name) facts.name = name;
    const alias = stateContent(room, 'm.room.canonical_alias')?.alias;
    if (typeof alias === 'string' && alias) facts.alias = alias;
    if (room.hasEncryptionStateEvent()) facts.enc = 1;
    if (m === 'join') {
      facts.joined = room.getJoinedMemberCount();
      facts.invited = room.getInvitedMemberCount();
      if (!facts.name && !facts.alias) {
        const heroes: Record<string, string> = {};
        // The SDK keeps the summary's heroes privately; the known joined and invited members stand in.
        const candidates = [...room.getJoinedMembers(), ...room.getMembersWithMembership('invite')].map((mb) => mb.userId);
        for (const id of candidates.filter((u) => u !== userId).slice(0, MAX_HEROES)) {
          const member = room.getMember(id);
          heroes[id] = member?.rawDisplayName && member.rawDisplayName !== id ? member.rawDisplayName : '';
        }
        if (Object.keys(heroes).length) facts.heroes = heroes;
      }
    }
    rooms.push(facts);
  }
  const direct: Record<string, string[]> = {};
  const content = client.getAccountData('m.direct' as never)?.getContent() as Json | undefined;
  for (const [user, ids] of Object.entries(content ?? {})) {
    if (!Array.isArray(ids)) continue;
    const kept = ids.filter((r): r is string => typeof r === 'string' && inRoom.has(r));
    if (kept.length) direct[user] = kept;
  }
  const out: ResumeState = { v: 1, user: userId, since, ...(filter ? { filter } : {}), ...(Object.keys(direct).length ? { direct } : {}), rooms };
  return JSON.stringify(out);
}

/** The stored facts as the /sync response the SDK would have kept. */
export function savedSyncOf(saved: ResumeState): ISavedSync {
  let n = 0;
  const ev = (type: string, stateKey: string, sender: string, content: Json): Json => ({
    type,
    state_key: stateKey,
    sender,
    content,
    event_id: `$gatehouse-resume-${++n}`,
    origin_server_ts: 0,
  });
  const me = saved.user;
  const join: Record<string, unknown> = {};
  const invite: Record<string, unknown> = {};
  for (const r of saved.rooms) {
    const state: Json[] = [];
    if (r.name) state.push(ev('m.room.name', '', me, { name: r.name }));
    if (r.alias) state.push(ev('m.room.canonical_alias', '', me, { alias: r.alias }));
    if (r.enc) state.push(ev('m.room.encryption', '', me, { algorithm: 'm.megolm.v1.aes-sha2' }));
    if (r.m === 'invite') {
      invite[r.id] = { invite_state: { events: [...state, ev('m.room.member', me, me, { membership: 'invite' })] } };
      continue;
    }
    state.push(ev('m.room.member', me, me, { membership: 'join' }));
    for (const [id, displayname] of Object.entries(r.heroes ?? {})) {
      state.push(ev('m.room.member', id, id, { membership: 'join', ...(displayname ? { displayname } : {}) }));
    }
    join[r.id] = {
      summary: { 'm.heroes': Object.keys(r.heroes ?? {}), 'm.joined_member_count': r.joined ?? 1, 'm.invited_member_count': r.invited ?? 0 },
      state: { events: state },
      timeline: { events: [], limited: false },
      ephemeral: { events: [] },
      account_data: { events: [] },
      unread_notifications: {},
    };
  }
  return {
    nextBatch: saved.since,
    roomsData: { join, invite, leave: {}, knock: {} } as unknown as ISavedSync['roomsData'],
    accountData: saved.direct ? [{ type: 'm.direct', content: saved.direct }] : [],
  };
}

/**
 * The SDK's in-memory store, handed the stored facts (once) as its saved sync, and keeping the
 * sync filter's id (which the SDK only keeps with a browser's localStorage).
 */
export class ResumeStore extends sdk.MemoryStore {
  private saved: ResumeState | null = null;
  private readonly filterIds: Map<string, string>;

  constructor() {
    const ids = new Map<string, string>();
    super({
      localStorage: {
        getItem: (k: string) => ids.get(k) ?? null,
        setItem: (k: string, v: string) => void ids.set(k, v),
        removeItem: (k: string) => void ids.delete(k),
        clear: () => ids.clear(),
        key: () => null,
        get length() {
          return ids.size;
        },
      },
    });
    this.filterIds = ids;
  }

  /** The next start resumes from these facts (null: a full initial sync). */
  resumeFrom(saved: ResumeState | null, filterName: string): void {
    this.saved = saved;
    if (saved?.filter) this.filterIds.set(`mxjssdk_memory_filter_${filterName}`, saved.filter);
  }

  /** The id of the uploaded sync filter, once the SDK has one. */
  filterId(filterName: string): string | null {
    return this.filterIds.get(`mxjssdk_memory_filter_${filterName}`) ?? null;
  }

  override getSavedSync(): Promise<ISavedSync | null> {
    const saved = this.saved;
    this.saved = null;
    return Promise.resolve(saved ? savedSyncOf(saved) : null);
  }

  override getSavedSyncToken(): Promise<string | null> {
    return Promise.resolve(this.saved?.since ?? null);
  }
}
