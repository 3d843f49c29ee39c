/**
 * The MUC service of one server: its domains (`conference.<host>`), the rooms in memory, and what
 * the stanza handlers (occupants.ts, messages.ts, admin.ts, disco.ts) share: sending, errors,
 * occupant ids, persistence of configuration and affiliations.
 *
 * Each room's stanzas are handled one at a time (KeyedSerial by room JID), and each handler awaits
 * its sends in order, so every occupant sees presence, self-presence, history and subject in the
 * order XEP-0045 7.2 gives. Error stanzas addressed to the room are handled outside that order
 * (they may be bounces of the room's own sends).
 */
import { createHmac, randomBytes } from 'node:crypto';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ServerContext } from '../../core/context.js';
import type { StanzaEvent } from '../../core/hooks.js';
import { KeyedSerial } from '../../core/quota.js';
import { Element, x } from '../../../shared/xml/element.js';
import { errorReply, type ErrorType } from '../../../shared/xml/stanza-errors.js';
import { Jid } from '../../../shared/jid.js';
import type { Config } from '../../config/index.js';
import { configFromJson, configToJson, defaultConfig, type ConfigLimits } from './config-form.js';
import { Room, type Occupant } from './room.js';
import type { MucRepository, StoredRoom } from './storage.js';
import { NS_MUC_USER, NS_OCCUPANT_ID, type Affiliation } from './roles.js';

/** The chat service's domain for each host (service domain → host). */
export function mucDomains(config: Config): Map<string, string> {
  const out = new Map<string, string>();
  if (!config.muc.enabled) return out;
  for (const { domain } of config.hosts) {
    const muc = config.muc.domains[domain] ?? config.muc.domain.replaceAll('{host}', domain);
    if (![...out.values()].includes(muc) && !out.has(muc)) out.set(muc, domain);
  }
  return out;
}

export interface RoomSummary {
  jid: string;
  name: string;
  occupants: number;
  persistent: boolean;
  public: boolean;
  membersOnly: boolean;
  locked: boolean;
  /** The node running the room (cluster mode). */
  node?: string;
}

/** What the service and its handlers need of cluster mode (cluster.ts implements it). */
export interface MucPlacement {
  /** Whether this node runs the room. */
  owns(roomJid: string): boolean;
  roomsOwnedBy(bare: string): Promise<number>;
  /** The rooms of every node, each with the node running it. */
  allRooms(): Promise<(RoomSummary & { node: string })[]>;
  destroy(room: string, reason?: string, alternate?: string): Promise<{ destroyed: string; occupants: number } | null>;
}

export interface PresenceDetails {
  codes?: number[];
  /** The new nick (303) on the unavailable presence of a nick change. */
  newNick?: string;
  actorNick?: string;
  reason?: string;
  /** Show this affiliation/role instead of the occupant's (a ban shows outcast/none). */
  affiliation?: Affiliation;
  role?: string;
}

export class MucService {
  /** Service domain → host. */
  domains = new Map<string, string>();
  /** Room bare JID → room. */
  readonly rooms = new Map<string, Room>();
  readonly serial = new KeyedSerial<string>();
  private secret: Buffer = randomBytes(32);
  /** Cluster mode only (cluster.ts): which rooms this node runs, and the other nodes' rooms. */
  cluster: MucPlacement | null = null;

  constructor(
    readonly ctx: ServerContext,
    readonly repo: MucRepository,
  ) {}

  get limits(): ConfigLimits {
    const m = this.ctx.config.muc;
    return { maxOccupants: m.maxOccupants, defaultHistory: m.defaultHistory, maxHistory: m.maxHistory };
  }

  /** The occupant-id key (XEP-0421): kept in the data directory so ids survive a restart. */
  async loadSecret(): Promise<void> {
    const file = join(this.ctx.config.dataDir, 'muc-occupant-id.key');
    try {
      const text = (await readFile(file, 'utf8')).trim();
      if (/^[0-9a-f]{64}$/.test(text)) {
        this.secret = Buffer.from(text, 'hex');
        return;
      }
    } catch {
      // not there yet
    }
    await mkdir(this.ctx.config.dataDir, { recursive: true });
    await writeFile(file, this.secret.toString('hex') + '\n', { mode: 0o600 });
  }

  /** Brings domains, disco items and the router's service domains in line with the configuration in force. */
  async refresh(): Promise<void> {
    const { disco, router } = this.ctx;
    const next = mucDomains(this.ctx.config);
    for (const d of this.domains.keys()) {
      if (next.has(d)) continue;
      disco.serverItems.delete(d);
      // The service is off on this domain: occupants are told (332); persistent rooms stay stored.
      for (const room of [...this.rooms.values()]) if (room.service === d) await this.serial.run(room.jid, () => this.shutDown(room));
      router.removeServiceDomain(d);
    }
    const added = [...next.keys()].filter((d) => !this.domains.has(d));
    this.domains = next;
    for (const d of next.keys()) {
      disco.serverItems.set(d, 'Chatrooms');
      router.addServiceDomain(d);
    }
    for (const d of added) await this.loadStored(d);
  }

  /** Loads the stored rooms of every domain not in memory yet (in a cluster: those this node owns). */
  async loadAllStored(): Promise<void> {
    for (const d of this.domains.keys()) await this.loadStored(d);
  }

  private async loadStored(service: string): Promise<void> {
    for (const stored of await this.repo.rooms(service)) {
      const jid = `${stored.name}@${service}`;
      if (this.rooms.has(jid) || (this.cluster && !this.cluster.owns(jid))) continue;
      await this.adopt(stored);
    }
  }

  private async adopt(stored: StoredRoom): Promise<Room> {
    const now = this.ctx.clock.now().getTime();
    const config = configFromJson(stored.config, this.limits);
    config.persistent = true;
    const room = new Room(stored.name, stored.service, config, this.ctx.config.muc.historyMaxAge, now);
    room.storedId = stored.id;
    for (const a of await this.repo.affiliations(stored.id)) {
      if (a.affiliation === 'none') continue;
      room.affiliations.set(a.jid, { affiliation: a.affiliation, nick: a.nick, reason: a.reason });
    }
    // Loaded by the other path meanwhile (membership change and a first stanza at once).
    const existing = this.rooms.get(room.jid);
    if (existing) return existing;
    this.rooms.set(room.jid, room);
    return room;
  }

  /**
   * Cluster mode: a stanza for a room not in memory may be the first for a stored room this node
   * just took over (before the load after the membership change ran): it is loaded first.
   */
  async loadIfStored(roomJid: string): Promise<void> {
    if (!this.cluster || this.rooms.has(roomJid)) return;
    const at = roomJid.indexOf('@');
    const stored = await this.repo.room(roomJid.slice(at + 1), roomJid.slice(0, at));
    if (stored && !this.rooms.has(roomJid)) await this.adopt(stored);
  }

  handles(e: StanzaEvent): boolean {
    return this.domains.has(e.to.domain);
  }

  newRoom(name: string, service: string): Room {
    const room = new Room(name, service, defaultConfig(this.limits), this.ctx.config.muc.historyMaxAge, this.ctx.clock.now().getTime());
    this.rooms.set(room.jid, room);
    return room;
  }

  /** A fresh room name (XEP-0307): random, lower case, not in use. */
  uniqueRoomName(): string {
    for (;;) {
      const name = randomBytes(10).toString('hex');
      if (![...this.domains.keys()].some((d) => this.rooms.has(`${name}@${d}`))) return name;
    }
  }

  occupantId(room: Room, bare: string): string {
    return createHmac('sha256', this.secret).update(room.jid).update('\0').update(bare).digest('base64url').slice(0, 24);
  }

  /** Sends a stanza from the service (its from must be the room or an occupant JID). */
  async send(stanza: Element): Promise<void> {
    try {
      await this.ctx.router.send(stanza);
    } catch (err) {
      this.ctx.log.warn('muc send failed', { error: String(err).slice(0, 200) });
    }
  }

  /** Answers `e` with an error from the address it was sent to. */
  async error(e: StanzaEvent, condition: string, text?: string, type?: ErrorType): Promise<void> {
    const reply = errorReply(e.stanza, condition, text, type);
    if (!reply) return;
    reply.attrs.from = e.to.full;
    reply.attrs.to = e.from.full;
    // The echoed payload of a refused message is the sender's own; a refused join keeps its <x/>.
    await this.send(reply);
  }

  async result(e: StanzaEvent, payload?: Element): Promise<void> {
    const reply = x('iq', { type: 'result', id: e.stanza.attrs.id, from: e.to.full, to: e.from.full }, payload);
    await this.send(reply);
  }

  /** The `<x xmlns=muc#user>` of an occupant's presence as `viewer` sees it. */
  userX(room: Room, occ: Occupant, viewer: Occupant | null, d: PresenceDetails, self: boolean): Element {
    const item = x('item', {
      affiliation: d.affiliation ?? room.affiliationOf(occ.bare),
      role: d.role ?? occ.role,
      jid: self || (viewer && room.showsRealJidsTo(viewer)) ? occ.shown : undefined,
      nick: d.newNick,
    });
    if (d.actorNick !== undefined) item.append(x('actor', { nick: d.actorNick }));
    if (d.reason) item.append(x('reason', {}, d.reason));
    const codes = [...(d.codes ?? [])];
    if (self) codes.unshift(110);
    return x('x', { xmlns: NS_MUC_USER }, item, [...new Set(codes)].map((code) => x('status', { code: String(code) })));
  }

  /** An occupant's current presence (available) as `viewer` sees it, addressed to `to`. */
  presenceOf(room: Room, occ: Occupant, viewer: Occupant | null, to: string, d: PresenceDetails = {}): Element {
    const base = occ.sessions.get(occ.shown);
    const p = new Element('presence', { from: `${room.jid}/${occ.nick}`, to });
    if (base) for (const c of base.children) if (typeof c !== 'string' && !isRoomAdded(c)) p.append(c.clone());
    p.append(this.userX(room, occ, viewer, d, viewer === occ));
    p.append(x('occupant-id', { xmlns: NS_OCCUPANT_ID, id: occ.occupantId }));
    return p;
  }

  /** An occupant's unavailable presence as `viewer` sees it. */
  unavailableOf(room: Room, occ: Occupant, viewer: Occupant | null, to: string, d: PresenceDetails = {}, status?: Element): Element {
    const p = new Element('presence', { from: `${room.jid}/${occ.nick}`, to, type: 'unavailable' });
    if (status) p.append(status.clone());
    p.append(this.userX(room, occ, viewer, { ...d, role: d.role ?? 'none' }, viewer === occ));
    p.append(x('occupant-id', { xmlns: NS_OCCUPANT_ID, id: occ.occupantId }));
    return p;
  }

  /**
   * Sends an occupant's presence to every session of every occupant (7.2.3 broadcast); the others
   * see it only when the room broadcasts the occupant's role (muc#roomconfig_presencebroadcast).
   */
  async broadcastPresence(room: Room, occ: Occupant, build: (viewer: Occupant, to: string) => Element): Promise<void> {
    const shown = room.broadcasts(occ.role);
    for (const viewer of [...room.occupants.values()]) {
      if (viewer !== occ && !shown) continue;
      for (const to of viewer.sessions.keys()) await this.send(build(viewer, to));
    }
    if (!room.occupants.has(occ.nick) || room.occupants.get(occ.nick) !== occ) {
      for (const to of occ.sessions.keys()) await this.send(build(occ, to));
    }
  }

  /**
   * An occupant's role changed (already set on it): everyone sees the new presence; when the new
   * role is one the room does not broadcast but the old one was, the others see the occupant leave.
   */
  async roleChanged(room: Room, occ: Occupant, oldRole: string, d: PresenceDetails = {}): Promise<void> {
    if (room.broadcasts(occ.role) || !room.broadcasts(oldRole)) return this.broadcastPresence(room, occ, (viewer, to) => this.presenceOf(room, occ, viewer, to, d));
    for (const viewer of [...room.occupants.values()]) {
      for (const to of viewer.sessions.keys()) await this.send(viewer === occ ? this.presenceOf(room, occ, viewer, to, d) : this.unavailableOf(room, occ, viewer, to, d));
    }
  }

  /** Sends a room message (without 'to') to every occupant session. */
  async broadcast(room: Room, stanza: Element): Promise<void> {
    for (const occ of [...room.occupants.values()]) {
      for (const to of occ.sessions.keys()) {
        const copy = stanza.clone();
        copy.attrs.to = to;
        await this.send(copy);
      }
    }
  }

  /** A message from the room itself with status codes (config changes 104, 172, 173). */
  async statusMessage(room: Room, codes: number[]): Promise<void> {
    if (codes.length === 0) return;
    await this.broadcast(
      room,
      x('message', { type: 'groupchat', from: room.jid, id: randomBytes(9).toString('base64url') }, x('x', { xmlns: NS_MUC_USER }, codes.map((c) => x('status', { code: String(c) })))),
    );
  }

  /** Removes a whole occupant (all its sessions) and tells everyone, with the codes given. */
  async removeOccupant(room: Room, occ: Occupant, d: PresenceDetails, status?: Element): Promise<void> {
    room.occupants.delete(occ.nick);
    for (const s of occ.sessions.keys()) room.sessions.delete(s);
    await this.broadcastPresence(room, occ, (viewer, to) => this.unavailableOf(room, occ, viewer, to, d, status));
    await this.roomEmptied(room);
  }

  /** A room without occupants: a temporary one goes, a persistent one notes when it was last used. */
  async roomEmptied(room: Room): Promise<void> {
    if (!room.empty) return;
    if (!room.config.persistent) {
      this.rooms.delete(room.jid);
      room.destroyed = true;
      return;
    }
    if (room.storedId !== null) await this.repo.touch(room.storedId, this.ctx.clock.now()).catch(() => {});
  }

  /** Writes a persistent room's configuration and affiliations; deletes the row of one no longer persistent. */
  async persist(room: Room): Promise<void> {
    try {
      if (!room.config.persistent || room.destroyed) {
        if (room.storedId !== null) await this.repo.deleteRoom(room.storedId);
        room.storedId = null;
        return;
      }
      room.storedId = await this.repo.saveRoom(room.service, room.name, configToJson(room.config), this.ctx.clock.now());
      // Rows written by someone else meanwhile (an account imported while the server runs) are adopted.
      for (const a of await this.repo.affiliations(room.storedId)) {
        if (a.affiliation === 'none' || room.affiliations.has(a.jid) || room.dropped.has(a.jid)) continue;
        room.affiliations.set(a.jid, { affiliation: a.affiliation, nick: a.nick, reason: a.reason });
      }
      room.dropped.clear();
      const list = [];
      for (const [jid, a] of room.affiliations) list.push({ jid, ...a, accountId: await this.accountIdOf(jid) });
      await this.repo.setAffiliations(room.storedId, list);
    } catch (err) {
      this.ctx.log.error('muc room not stored', { room: room.jid, error: String(err).slice(0, 200) });
    }
  }

  private async accountIdOf(bare: string): Promise<number | null> {
    const jid = Jid.tryParse(bare);
    if (!jid?.local || !this.ctx.router.isLocalHost(jid.domain)) return null;
    return (await this.ctx.storage.accounts.get(jid.local, jid.domain))?.id ?? null;
  }

  /** Whether `from` may create rooms here (`muc.creation`); the refusal text, or null. */
  creationRefusal(from: Jid, service: string): string | null {
    const who = this.ctx.config.muc.creation;
    const local = from.local !== '' && this.ctx.router.isLocalHost(from.domain);
    if (who === 'anyone') return null;
    if (who === 'local') return local ? null : `only users of ${this.domains.get(service) ?? 'this server'} may create rooms here`;
    return local && this.ctx.config.admins.includes(from.bare) ? null : 'only the server\'s administrators may create rooms here';
  }

  /** Rooms `bare` owns, on every node of a cluster. */
  async roomsOwnedAnywhere(bare: string): Promise<number> {
    return this.cluster ? this.cluster.roomsOwnedBy(bare) : this.roomsOwnedBy(bare);
  }

  roomsOwnedBy(bare: string): number {
    let n = 0;
    for (const r of this.rooms.values()) if (r.affiliations.get(bare)?.affiliation === 'owner') n++;
    return n;
  }

  /** Destroys a room (10.9): every occupant gets the unavailable presence with `<destroy/>`. */
  async destroy(room: Room, reason?: string, alternate?: string, password?: string): Promise<void> {
    room.destroyed = true;
    this.rooms.delete(room.jid);
    const destroyEl = x('destroy', { jid: alternate }, reason ? x('reason', {}, reason) : null, password ? x('password', {}, password) : null);
    for (const occ of [...room.occupants.values()]) {
      for (const to of occ.sessions.keys()) {
        await this.send(
          x(
            'presence',
            { from: `${room.jid}/${occ.nick}`, to, type: 'unavailable' },
            x('x', { xmlns: NS_MUC_USER }, x('item', { affiliation: 'none', role: 'none' }), destroyEl.clone(), x('status', { code: '110' })),
            x('occupant-id', { xmlns: NS_OCCUPANT_ID, id: occ.occupantId }),
          ),
        );
      }
    }
    room.occupants.clear();
    room.sessions.clear();
    room.history.clear();
    if (room.storedId !== null) {
      await this.repo.deleteRoom(room.storedId).catch((err) => this.ctx.log.error('muc room not deleted', { room: room.jid, error: String(err).slice(0, 200) }));
      room.storedId = null;
    }
  }

  /** An account was deleted: its affiliations leave every room (their rows are gone with the account). */
  forgetAccount(bare: string): void {
    for (const room of this.rooms.values()) room.affiliations.delete(bare);
  }

  /** Takes a room out of service without deleting it: everyone leaves with status 332 (system shutdown). */
  async shutDown(room: Room): Promise<void> {
    this.rooms.delete(room.jid);
    for (const occ of [...room.occupants.values()]) {
      room.occupants.delete(occ.nick);
      await this.broadcastPresence(room, occ, (viewer, to) => this.unavailableOf(room, occ, viewer, to, { codes: [332] }));
    }
    room.sessions.clear();
    room.history.clear();
  }

  /** The server stops: every room shuts down (332); persistent ones stay stored. */
  async shutDownAll(): Promise<void> {
    for (const room of [...this.rooms.values()]) await this.serial.run(room.jid, () => this.shutDown(room));
  }

  /** Persistent rooms the retention sweep deleted: gone from memory too (nobody was in them for a long time). */
  async forgetExpired(roomIds: readonly number[]): Promise<void> {
    const ids = new Set(roomIds);
    for (const room of [...this.rooms.values()]) {
      if (room.storedId === null || !ids.has(room.storedId)) continue;
      room.storedId = null;
      // Someone is in it after all (it was last empty long ago): it stays, stored afresh.
      await this.serial.run(room.jid, () => (room.empty ? this.destroy(room, 'the room was not used for a long time') : this.persist(room)));
    }
  }

  /** Totals for statistics and the admin console. */
  counts(): { rooms: number; occupants: number } {
    let occupants = 0;
    for (const r of this.rooms.values()) occupants += r.occupants.size;
    return { rooms: this.rooms.size, occupants };
  }
}

/** Children the room adds or owns in an occupant's presence (removed from what the client sent). */
function isRoomAdded(c: Element): boolean {
  const ns = c.xmlns;
  return ns === 'http://jabber.org/protocol/muc' || ns === NS_MUC_USER || ns === NS_OCCUPANT_ID;
}
