/**
 * Matrix rooms as the kit's MUC rooms: joining (by room ID or alias, whatever its case), members
 * in the kit's occupant table (joins, leaves, kicks, display names, power levels), invitations,
 * the room commands (topic, name, kick, invite), and the room directory (the user's Matrix rooms,
 * and the homeserver's published rooms as a node). Messages in rooms the kit has not joined
 * (yet) are kept (the last `backlogLimit` per room, in memory only) and delivered with their
 * timestamps right after the kit joins.
 */
import * as sdk from 'matrix-js-sdk';
import {
  LegacyNetworkError,
  type DirectoryItem,
  type DirectoryListing,
  type DirectoryRequest,
  type LegacyContact,
  type LegacyRoom,
  type Occupant,
  type TextMessage,
} from '../kit/adapter.js';
import { MatrixContacts, type KitRoom } from './contacts.js';
import { MatrixCommandError, commandError, describe, errcodeOf, httpStatusOf } from './errors.js';
import { nickOf, occupantOf } from './roles.js';
import { BoundedMap } from './sdk.js';

/** The room directory's node of the homeserver's published rooms. */
const PUBLIC_NODE = 'public';
/** Published rooms listed at most (the largest; one request to the homeserver). */
const PUBLIC_ROOMS_LIMIT = 500;

interface PublicRoomsChunk {
  room_id: string;
  num_joined_members?: number;
  name?: string;
  topic?: string;
  canonical_alias?: string;
  room_type?: string;
}

interface BacklogEntry {
  sender: string;
  msg: TextMessage;
}

export abstract class MatrixRooms extends MatrixContacts {
  protected readonly backlog = new Map<string, BacklogEntry[]>();
  private readonly invitesSeen = new BoundedMap<string, true>(1000);
  /** Rooms known only from the stored facts (resume.ts): their full state is fetched at the join. */
  protected readonly restoredRooms = new Set<string>();

  protected nickIn(kr: KitRoom, room: sdk.Room, userId: string): string {
    return kr.occupants.nickOf(userId) ?? nickOf(room.getMember(userId), userId);
  }

  private occupantOf(room: sdk.Room, userId: string): Occupant {
    return occupantOf(room, userId, this.contactOf(userId, room));
  }

  protected refreshRoles(kr: KitRoom, room: sdk.Room): void {
    for (const userId of kr.occupants.ids()) {
      const o = this.occupantOf(room, userId);
      kr.occupants.update(userId, { role: o.role, affiliation: o.affiliation, ...(o.contact ? { contact: o.contact } : {}) });
    }
  }

  protected kitRoomFor(room: LegacyRoom): KitRoom | undefined {
    for (const kr of this.kitRooms.values()) if (kr.room.id === room.id) return kr;
    const lower = room.id.toLowerCase();
    for (const kr of this.kitRooms.values()) if (kr.room.id.toLowerCase() === lower) return kr;
    return undefined;
  }

  protected requireKitRoom(room: LegacyRoom): KitRoom {
    const kr = this.kitRoomFor(room);
    if (!kr) throw new MatrixCommandError(`not in the room ${room.id}`, 'not-acceptable');
    return kr;
  }

  /**
   * The room ID or alias to join for a kit id. JIDs are case-folded, Matrix room IDs are not: an
   * id the homeserver would not know exactly is matched against the rooms and aliases the
   * account knows, ignoring case.
   */
  private resolveRoomRef(id: string): string {
    const rooms = this.client.getRooms();
    if (id.startsWith('!')) {
      if (rooms.some((r) => r.roomId === id)) return id;
      const found = rooms.find((r) => r.roomId.toLowerCase() === id.toLowerCase());
      return found?.roomId ?? id;
    }
    const exact = rooms.find((r) => r.getCanonicalAlias() === id || r.getAltAliases().includes(id));
    if (exact) return exact.roomId;
    const lower = id.toLowerCase();
    const found = rooms.find((r) => r.getCanonicalAlias()?.toLowerCase() === lower || r.getAltAliases().some((a) => a.toLowerCase() === lower));
    return found?.roomId ?? id;
  }

  /** Resolves when the SDK has the room with the user joined (the join arrives through /sync). */
  private waitForJoined(roomId: string): Promise<sdk.Room | null> {
    const check = () => {
      const r = this.client.getRoom(roomId);
      return r && r.getMyMembership() === 'join' ? r : null;
    };
    const now = check();
    if (now) return Promise.resolve(now);
    return new Promise((resolve) => {
      const onSync = () => {
        const r = check();
        if (r) done(r);
      };
      const done = (r: sdk.Room | null) => {
        clearTimeout(timer);
        this.client.off(sdk.ClientEvent.Sync, onSync);
        resolve(r);
      };
      const timer = setTimeout(() => done(null), this.opts.joinTimeoutMs);
      this.client.on(sdk.ClientEvent.Sync, onSync);
    });
  }

  /**
   * The room directory (disco#items on the gateway): the Matrix rooms the user is in (not direct
   * chats or spaces), from the SDK's store, and a node of the homeserver's published rooms
   * (GET /publicRooms, the largest PUBLIC_ROOMS_LIMIT). A room's id is its canonical alias, else its ID.
   */
  async roomDirectory({ node, max }: DirectoryRequest): Promise<DirectoryListing | null> {
    this.ensureReady();
    if (node === null) {
      const rooms: DirectoryItem[] = [];
      for (const room of this.client.getRooms()) {
        if (room.getMyMembership() !== 'join' || room.isSpaceRoom() || this.directContactOf(room)) continue;
        const topic = room.currentState.getStateEvents('m.room.topic', '')?.getContent().topic;
        rooms.push({
          room: { id: room.getCanonicalAlias() ?? room.roomId, ...(room.name && room.name !== room.roomId ? { name: room.name } : {}) },
          members: room.getJoinedMemberCount(),
          ...(typeof topic === 'string' && topic ? { topic } : {}),
        });
      }
      rooms.sort((a, b) => (a.room!.name ?? a.room!.id).localeCompare(b.room!.name ?? b.room!.id));
      const items = [{ node: PUBLIC_NODE, name: `Public rooms on ${this.userId.slice(this.userId.indexOf(':') + 1)}` }, ...rooms];
      return { items: items.slice(0, max), complete: items.length <= max };
    }
    if (node !== PUBLIC_NODE) return null;
    let res: { chunk?: PublicRoomsChunk[]; next_batch?: string };
    try {
      res = (await this.client.publicRooms({ limit: Math.min(max, PUBLIC_ROOMS_LIMIT) })) as typeof res;
    } catch (err) {
      throw new LegacyNetworkError(`${this.host} did not list its public rooms: ${describe(err)}`);
    }
    const items: DirectoryItem[] = [];
    for (const c of res.chunk ?? []) {
      if (typeof c.room_id !== 'string' || c.room_type === 'm.space') continue;
      const id = typeof c.canonical_alias === 'string' && c.canonical_alias ? c.canonical_alias : c.room_id;
      items.push({
        room: { id, ...(typeof c.name === 'string' && c.name ? { name: c.name } : {}) },
        ...(typeof c.num_joined_members === 'number' ? { members: c.num_joined_members } : {}),
        ...(typeof c.topic === 'string' && c.topic ? { topic: c.topic } : {}),
      });
    }
    return { items: items.slice(0, max), complete: !res.next_batch && items.length <= max };
  }

  async joinRoom(room: LegacyRoom, _nick: string, _password?: string): Promise<void> {
    this.ensureReady();
    const existing = this.kitRoomFor(room);
    if (existing) {
      const mroom = this.client.getRoom(existing.roomId);
      if (mroom && mroom.getMyMembership() === 'join') {
        this.emitJoined(existing, mroom);
        return;
      }
      this.kitRooms.delete(existing.roomId);
      this.contactsCache = null;
    }
    if (!/^[!#][^:]+:.+$/.test(room.id)) {
      this.safeEmit('roomJoinFailed', room, `not a Matrix room ID or alias: ${room.id}`, 'item-not-found');
      return;
    }
    let roomId: string;
    try {
      roomId = (await this.client.joinRoom(this.resolveRoomRef(room.id))).roomId;
    } catch (err) {
      const code = errcodeOf(err);
      const status = httpStatusOf(err);
      if (!code && !status) throw new LegacyNetworkError(`cannot join ${room.id}: ${describe(err)}`);
      const reason = describe(err);
      const condition = code === 'M_NOT_FOUND' || status === 404 ? 'item-not-found' : code === 'M_FORBIDDEN' || status === 403 ? (/invite/i.test(reason) ? 'registration-required' : 'forbidden') : 'service-unavailable';
      this.safeEmit('roomJoinFailed', room, reason, condition);
      return;
    }
    const mroom = await this.waitForJoined(roomId);
    if (this.phase !== 'ready') return;
    if (!mroom) {
      this.safeEmit('roomJoinFailed', room, `${this.host} did not confirm the join in time`, 'service-unavailable');
      return;
    }
    await this.completeState(mroom);
    if (this.phase !== 'ready') return;
    await mroom.loadMembersIfNeeded().catch((err: unknown) => this.log.debug('matrix member list not loaded', { homeserver: this.host, reason: describe(err) }));
    if (this.phase !== 'ready') return;
    const legacy: LegacyRoom = { ...room };
    if (mroom.name && mroom.name !== roomId) legacy.name = mroom.name;
    const kr: KitRoom = { room: legacy, roomId, occupants: this.occupantTable(legacy) };
    this.kitRooms.set(roomId, kr);
    this.contactsCache = null;
    this.emitJoined(kr, mroom);
  }

  /** A room restored from the stored facts gets its current state (topic, power levels, members) once. */
  private async completeState(room: sdk.Room): Promise<void> {
    if (!this.restoredRooms.delete(room.roomId)) return;
    try {
      const events = (await this.client.http.authedRequest(sdk.Method.Get, `/rooms/${encodeURIComponent(room.roomId)}/state`)) as unknown as Record<string, unknown>[];
      if (!Array.isArray(events)) return;
      room.currentState.setStateEvents(events.map((e) => new sdk.MatrixEvent({ ...(e as object), room_id: room.roomId } as never)));
      room.recalculate();
    } catch (err) {
      this.log.info('matrix room state not fetched', { homeserver: this.host, reason: describe(err) });
    }
  }

  private emitJoined(kr: KitRoom, room: sdk.Room): void {
    const members = room.getJoinedMembers().map((m) => m.userId);
    if (!members.includes(this.userId)) members.push(this.userId);
    kr.occupants.replaceAll(members.map((userId) => ({ id: userId, occupant: this.occupantOf(room, userId), data: undefined })));
    kr.occupants.announced = true;
    const topic = room.currentState.getStateEvents('m.room.topic', '')?.getContent().topic;
    this.safeEmit('roomJoined', kr.room, kr.occupants.nickOf(this.userId)!, kr.occupants.list(), typeof topic === 'string' && topic ? topic : null);
    const held = this.backlog.get(room.roomId);
    this.backlog.delete(room.roomId);
    for (const { sender, msg } of held ?? []) this.safeEmit('roomMessage', kr.room, this.nickIn(kr, room, sender), msg);
  }

  async leaveRoom(room: LegacyRoom, reason?: string): Promise<void> {
    this.ensureReady();
    const kr = this.kitRoomFor(room);
    if (!kr) return;
    this.kitRooms.delete(kr.roomId);
    this.contactsCache = null;
    if (!this.opts.leaveRoomsOnPart) return;
    try {
      await this.client.http.authedRequest(sdk.Method.Post, `/rooms/${encodeURIComponent(kr.roomId)}/leave`, undefined, reason ? { reason } : {});
    } catch (err) {
      throw commandError(err, `cannot leave ${room.id}`);
    }
  }

  async setSubject(room: LegacyRoom, subject: string): Promise<void> {
    this.ensureReady();
    const kr = this.requireKitRoom(room);
    try {
      await this.client.setRoomTopic(kr.roomId, subject);
    } catch (err) {
      throw commandError(err, 'cannot change the topic');
    }
  }

  async changeNick(room: LegacyRoom | null, nick: string): Promise<void> {
    this.ensureReady();
    const name = nick.trim();
    if (!name) throw new MatrixCommandError('the name is empty', 'bad-request');
    try {
      if (!room) {
        await this.client.setDisplayName(name);
        return;
      }
      const kr = this.requireKitRoom(room);
      const current = this.client.getRoom(kr.roomId)?.currentState.getStateEvents('m.room.member', this.userId)?.getContent() ?? { membership: 'join' };
      await this.client.sendStateEvent(kr.roomId, 'm.room.member' as never, { ...current, membership: 'join', displayname: name } as never, this.userId);
    } catch (err) {
      throw commandError(err, 'cannot change the name');
    }
  }

  async kick(room: LegacyRoom, nick: string, reason?: string): Promise<void> {
    this.ensureReady();
    const kr = this.requireKitRoom(room);
    const userId = kr.occupants.entries().find((o) => o.nick === nick)?.id;
    if (!userId) throw new MatrixCommandError(`${nick} is not in the room`, 'item-not-found');
    try {
      await this.client.kick(kr.roomId, userId, reason);
    } catch (err) {
      throw commandError(err, `cannot kick ${nick}`);
    }
  }

  async invite(room: LegacyRoom, contact: LegacyContact, reason?: string): Promise<void> {
    this.ensureReady();
    const kr = this.requireKitRoom(room);
    try {
      await this.client.invite(kr.roomId, contact.id, reason);
    } catch (err) {
      throw commandError(err, `cannot invite ${contact.id}`);
    }
  }

  protected onMember(ev: sdk.MatrixEvent, room: sdk.Room): void {
    const target = ev.getStateKey();
    if (!target) return;
    const content = ev.getContent();
    const membership = content.membership as string | undefined;
    const prev = ev.getPrevContent().membership as string | undefined;
    if (target === this.userId) {
      if (membership === 'invite' && ev.getSender() !== this.userId) return this.onInvite(room, ev);
      if ((membership === 'leave' || membership === 'ban') && prev === 'join') {
        this.backlog.delete(room.roomId);
        const kr = this.kitRooms.get(room.roomId);
        if (kr) {
          this.kitRooms.delete(room.roomId);
          this.contactsCache = null;
          const sender = ev.getSender();
          const by = sender && sender !== this.userId ? this.nickIn(kr, room, sender) : null;
          const own = kr.occupants.nickOf(this.userId) ?? this.userId;
          this.safeEmit('occupantLeft', kr.room, own, typeof content.reason === 'string' ? content.reason : null, by);
        }
        return;
      }
    }
    if (membership === 'join' && prev !== 'join' && !this.kitRooms.has(room.roomId) && this.directContactOf(room) === target) {
      void this.emitRoster(false);
    }
    const kr = this.kitRooms.get(room.roomId);
    if (!kr) return;
    const known = kr.occupants.has(target);
    if (membership === 'join') {
      const occupant = this.occupantOf(room, target);
      if (!known) kr.occupants.join(target, occupant, undefined);
      else kr.occupants.update(target, { nick: occupant.nick });
    } else if (known) {
      const sender = ev.getSender();
      const by = sender && sender !== target ? this.nickIn(kr, room, sender) : null;
      kr.occupants.part(target, typeof content.reason === 'string' ? content.reason : null, by);
    }
    // Display names are disambiguated ("Alice (@alice:example.org)") while two members share one.
    const names = new Set([content.displayname, ev.getPrevContent().displayname].filter((n): n is string => typeof n === 'string'));
    if (names.size) {
      for (const userId of kr.occupants.ids()) {
        if (userId === target) continue;
        const m = room.getMember(userId);
        if (m && names.has(m.rawDisplayName)) kr.occupants.update(userId, { nick: nickOf(m, userId) });
      }
    }
  }

  protected onInvite(room: sdk.Room, ev: sdk.MatrixEvent): void {
    const by = ev.getSender();
    if (!by || by === this.userId) return;
    const key = `${room.roomId}\u0000${ev.getId() ?? by}`;
    if (this.invitesSeen.has(key) || room.getMyMembership() !== 'invite') return;
    this.invitesSeen.set(key, true);
    const content = ev.getContent();
    if (content.is_direct === true && this.opts.acceptDirectInvites) {
      void this.acceptDirect(room.roomId, by);
      return;
    }
    const alias = room.getCanonicalAlias();
    const legacy: LegacyRoom = { id: alias ?? room.roomId };
    if (room.name && room.name !== room.roomId) legacy.name = room.name;
    this.safeEmit('invited', legacy, this.contactOf(by, room), typeof content.reason === 'string' ? content.reason : null);
  }

  private async acceptDirect(roomId: string, by: string): Promise<void> {
    try {
      await this.client.joinRoom(roomId);
      await this.addDirect(by, roomId);
      this.log.debug('matrix accepted a direct chat invitation', { homeserver: this.host });
    } catch (err) {
      this.log.info('matrix could not accept a direct chat invitation', { homeserver: this.host, reason: describe(err) });
    }
  }
}
