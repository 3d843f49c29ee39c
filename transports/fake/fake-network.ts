/**
 * A fake in-process network for the kit's tests (and for trying the kit without a real network):
 * accounts with passwords, rooms with occupants, topics, bans, passwords, remote users that talk,
 * join, part, kick and rename on command, scripted login failures and dropped connections.
 *
 * It behaves like a small IRC: one nick per account and server, rooms are `#name`, nick changes
 * are global, contacts are the other nicks. Every event reaches the kit asynchronously, as from a
 * socket. What the transport sent is recorded for assertions (`sent`), never with passwords.
 */
import { EventEmitter } from 'node:events';
import {
  CommandFailure,
  LegacyAuthError,
  type AdapterCommand,
  type DirectoryItem,
  type DirectoryListing,
  type DirectoryRequest,
  LegacyNetworkError,
  type Credentials,
  type LegacyContact,
  type LegacyRoom,
  type LegacySession,
  type LegacySessionEvents,
  type LoginRequest,
  type NetworkAdapter,
  type Occupant,
  type OccupantRole,
  type RegistrationField,
  type TextMessage,
} from '../kit/adapter.js';

export interface FakeNetworkOptions {
  /** The network id ('fake' unless told). */
  network?: string;
  name?: string;
  /** Multi-server (like IRC): these servers exist; the first is the default. */
  servers?: string[];
  /** The network echoes room messages (IRC echo-message). */
  echo?: boolean;
  /**
   * Ad-hoc commands of the network (kit extension): a session runs them by answering with the
   * values it got (secret ones by length only), or fails with CommandFailure when `fail` is set;
   * chat messages to the gateway are answered "heard: <text>".
   */
  commands?: AdapterCommand[];
}

export type ScriptedFailure = 'auth' | 'network' | 'hang';

export interface FakeRoomState {
  id: string;
  server: string | undefined;
  subject: string | null;
  subjectBy: string | null;
  occupants: Map<string, Occupant>;
  banned: Set<string>;
  password: string | null;
}

export interface SentRecord {
  kind: 'message' | 'room-message' | 'subject' | 'kick' | 'typing' | 'presence' | 'read' | 'invite';
  from: string;
  to: string;
  text?: string;
  action?: boolean;
  server?: string;
  /** The kit's id of the message (TextMessage.id), its edit/retraction/reaction/reply targets. */
  id?: string;
  editOf?: string;
  redacts?: string;
  reactions?: { to: string; keys: string[] };
  replyTo?: string;
}

function details(msg: TextMessage): Partial<SentRecord> {
  const out: Partial<SentRecord> = {};
  if (msg.id) out.id = msg.id;
  if (msg.editOf) out.editOf = msg.editOf;
  if (msg.redacts) out.redacts = msg.redacts;
  if (msg.reactions) out.reactions = msg.reactions;
  if (msg.replyTo) out.replyTo = msg.replyTo;
  return out;
}

function later(fn: () => void): void {
  setImmediate(fn);
}

const norm = (s: string) => s.toLowerCase();

export class FakeNetwork {
  readonly network: string;
  readonly name: string;
  readonly servers: string[] | null;
  readonly echo: boolean;
  readonly commands: AdapterCommand[] | undefined;
  /** username → password */
  readonly accounts = new Map<string, string>();
  readonly rooms = new Map<string, FakeRoomState>();
  readonly sessions = new Set<FakeSession>();
  /** The next logins fail like this, in order. */
  readonly failNextLogins: ScriptedFailure[] = [];
  /** Every login attempt: user, server, account; never a password. */
  readonly logins: { userJid: string; server: string | undefined; username: string; ok: boolean; state?: string }[] = [];
  /** What sessions sent, for assertions. */
  readonly sent: SentRecord[] = [];
  /** Presence of remote users, by nick (lower case). */
  readonly remotePresence = new Map<string, { show: 'available' | 'away' | 'dnd' | 'xa'; status: string | null }>();
  loginDelayMs = 0;
  /**
   * The room directory sessions list (kit extension roomDirectory), by node (null: the top
   * level), the same on every server; a node it lacks is unknown. Empty: none.
   */
  readonly directory = new Map<string | null, DirectoryItem[]>();
  /** Listings sessions were asked for: the node ('' for the top level) and the server. */
  readonly directoryCalls: { node: string; server: string | undefined; max: number }[] = [];
  /** Listing fails with this text (a network error) while set. */
  directoryFailure: string | null = null;

  constructor(opts: FakeNetworkOptions = {}) {
    this.network = opts.network ?? 'fake';
    this.name = opts.name ?? 'Fake gateway';
    this.servers = opts.servers && opts.servers.length ? [...opts.servers] : null;
    this.echo = opts.echo ?? false;
    this.commands = opts.commands;
  }

  addAccount(username: string, password: string): this {
    this.accounts.set(username, password);
    return this;
  }

  private roomKey(id: string, server: string | undefined): string {
    return `${server ?? ''}\u0000${norm(id)}`;
  }

  /** The room (created empty if it does not exist). */
  room(id: string, server?: string): FakeRoomState {
    const srv = server ?? this.servers?.[0];
    const key = this.roomKey(id, srv);
    let r = this.rooms.get(key);
    if (!r) {
      r = { id, server: srv, subject: null, subjectBy: null, occupants: new Map(), banned: new Set(), password: null };
      this.rooms.set(key, r);
    }
    return r;
  }

  findRoom(id: string, server: string | undefined): FakeRoomState | undefined {
    return this.rooms.get(this.roomKey(id, server ?? this.servers?.[0]));
  }

  legacyRoom(r: FakeRoomState): LegacyRoom {
    return { id: r.id, ...(r.server !== undefined ? { server: r.server } : {}), name: `Fake room ${r.id}` };
  }

  /** The live session of an XMPP user (on a server). */
  sessionOf(userJid: string, server?: string): FakeSession | undefined {
    const srv = server ?? this.servers?.[0];
    return [...this.sessions].find((s) => s.userJid === userJid && s.server === srv);
  }

  private sessionByNick(nick: string, server: string | undefined): FakeSession | undefined {
    return [...this.sessions].find((s) => norm(s.nick) === norm(nick) && s.server === server);
  }

  /** Sessions in a room. */
  private inRoom(r: FakeRoomState): FakeSession[] {
    return [...this.sessions].filter((s) => s.server === r.server && s.joined.has(norm(r.id)));
  }

  /** The directory changed: every session of `server` (all when not given) says so. */
  directoryChanged(server?: string): void {
    for (const s of this.sessions) if (server === undefined || s.server === server) later(() => s.emit('directoryChanged'));
  }

  // ---- remote users (scripted by tests) ----

  /** A remote user joins a room. */
  remoteJoin(roomId: string, nick: string, role: OccupantRole = 'participant', server?: string): void {
    const r = this.room(roomId, server);
    const occ: Occupant = { nick, role, affiliation: role === 'moderator' ? 'admin' : 'none', contact: { id: nick, ...(r.server ? { server: r.server } : {}) } };
    r.occupants.set(nick, occ);
    for (const s of this.inRoom(r)) later(() => s.emit('occupantJoined', this.legacyRoom(r), occ));
  }

  remotePart(roomId: string, nick: string, reason: string | null = null, server?: string): void {
    const r = this.room(roomId, server);
    r.occupants.delete(nick);
    for (const s of this.inRoom(r)) later(() => s.emit('occupantLeft', this.legacyRoom(r), nick, reason, null));
  }

  /** A remote moderator kicks someone (a remote user or a session's nick). */
  remoteKick(roomId: string, nick: string, by: string, reason: string | null = null, server?: string): void {
    const r = this.room(roomId, server);
    r.occupants.delete(nick);
    const victim = this.inRoom(r).find((s) => norm(s.nick) === norm(nick));
    for (const s of this.inRoom(r)) later(() => s.emit('occupantLeft', this.legacyRoom(r), nick, reason, by));
    if (victim) victim.joined.delete(norm(r.id));
  }

  remoteSay(roomId: string, nick: string, text: string, opts: Partial<TextMessage> = {}, server?: string): void {
    const r = this.room(roomId, server);
    for (const s of this.inRoom(r)) later(() => s.emit('roomMessage', this.legacyRoom(r), nick, { text, ...opts }));
  }

  remoteNick(oldNick: string, newNick: string, server?: string): void {
    const srv = server ?? this.servers?.[0];
    for (const r of this.rooms.values()) {
      if (r.server !== srv || !r.occupants.has(oldNick)) continue;
      const occ = r.occupants.get(oldNick)!;
      r.occupants.delete(oldNick);
      r.occupants.set(newNick, { ...occ, nick: newNick });
      for (const s of this.inRoom(r)) later(() => s.emit('nickChanged', this.legacyRoom(r), oldNick, newNick));
    }
  }

  remoteTopic(roomId: string, topic: string, by: string, server?: string): void {
    const r = this.room(roomId, server);
    r.subject = topic;
    r.subjectBy = by;
    for (const s of this.inRoom(r)) later(() => s.emit('subject', this.legacyRoom(r), topic, by));
  }

  /** A remote user writes privately to the session of `toUser` (XMPP JID). */
  remotePrivate(fromNick: string, toUser: string, text: string, opts: Partial<TextMessage> & { displayName?: string } = {}, server?: string): void {
    const s = this.sessionOf(toUser, server);
    if (!s) throw new Error(`no session of ${toUser}`);
    const { displayName, ...msg } = opts;
    later(() => s.emit('message', { id: fromNick, ...(s.server ? { server: s.server } : {}), ...(displayName ? { displayName } : {}) }, { text, ...msg }));
  }

  remotePresenceChange(nick: string, show: 'available' | 'away' | 'dnd' | 'xa' | 'unavailable', status: string | null = null): void {
    if (show === 'unavailable') this.remotePresence.delete(norm(nick));
    else this.remotePresence.set(norm(nick), { show, status });
    for (const s of this.sessions) {
      if (!s.watching.has(norm(nick))) continue;
      later(() => s.emit('contactPresence', { id: nick, ...(s.server ? { server: s.server } : {}) }, show, status));
    }
  }

  serverNotice(userJid: string, text: string, server?: string): void {
    const s = this.sessionOf(userJid, server);
    if (!s) throw new Error(`no session of ${userJid}`);
    later(() => s.emit('serverMessage', s.server ?? '', { text, notice: true }));
  }

  /** The network's contact list for a user (XEP-0144 path). */
  sendRoster(userJid: string, contacts: LegacyContact[], server?: string): void {
    const s = this.sessionOf(userJid, server);
    if (!s) throw new Error(`no session of ${userJid}`);
    later(() => s.emit('roster', contacts));
  }

  remoteTyping(nick: string, toUser: string, state: 'composing' | 'paused' | 'active', server?: string): void {
    const s = this.sessionOf(toUser, server);
    if (!s) throw new Error(`no session of ${toUser}`);
    later(() => s.emit('typing', { id: nick, ...(s.server ? { server: s.server } : {}) }, state));
  }

  /** A remote user read the user's messages up to `messageId` (in a room when `roomId` is given). */
  remoteDisplayed(nick: string, toUser: string, messageId: string, roomId?: string, server?: string): void {
    const s = this.sessionOf(toUser, server);
    if (!s) throw new Error(`no session of ${toUser}`);
    const from = roomId ? { room: this.legacyRoom(this.room(roomId, s.server)), nick } : { id: nick, ...(s.server ? { server: s.server } : {}) };
    later(() => s.emit('displayed', from, messageId));
  }

  /** A remote user invites the user to a room. */
  remoteInvite(byNick: string, toUser: string, roomId: string, reason: string | null = null, server?: string): void {
    const s = this.sessionOf(toUser, server);
    if (!s) throw new Error(`no session of ${toUser}`);
    const r = this.room(roomId, s.server);
    later(() => s.emit('invited', this.legacyRoom(r), { id: byNick, ...(s.server ? { server: s.server } : {}) }, reason));
  }

  /** The session's position in the event stream moved (Matrix-style sync token). */
  sync(userJid: string, state: string, server?: string): void {
    const s = this.sessionOf(userJid, server);
    if (!s) throw new Error(`no session of ${userJid}`);
    later(() => s.emit('syncState', state));
  }

  /** A remote user's message with all the trimmings (id, edit, reactions, retraction, reply). */
  remoteMessage(fromNick: string, toUser: string, msg: TextMessage, server?: string): void {
    const s = this.sessionOf(toUser, server);
    if (!s) throw new Error(`no session of ${toUser}`);
    later(() => s.emit('message', { id: fromNick, ...(s.server ? { server: s.server } : {}) }, msg));
  }

  /** The network puts a user's session into a room by itself (IRC autojoin, a forced join). */
  forceJoin(userJid: string, roomId: string, server?: string): void {
    const s = this.sessionOf(userJid, server);
    if (!s) throw new Error(`no session of ${userJid}`);
    const r = this.room(roomId, s.server);
    const occ: Occupant = { nick: s.nick, role: 'participant', affiliation: 'none', contact: { id: s.nick, ...(s.server ? { server: s.server } : {}) } };
    r.occupants.set(s.nick, occ);
    s.joined.add(norm(r.id));
    later(() => s.emit('roomJoined', this.legacyRoom(r), s.nick, [...r.occupants.values()], r.subject));
  }

  /** Drops a session's connection (final: the network will not take it back, e.g. a ban). */
  drop(userJid: string, reason: string, final = false, server?: string): void {
    const s = this.sessionOf(userJid, server);
    if (!s) throw new Error(`no session of ${userJid}`);
    s.close();
    later(() => s.emit('disconnected', reason, final));
  }

  // ---- used by sessions ----

  deliverPrivate(from: FakeSession, to: LegacyContact, msg: TextMessage): void {
    this.sent.push({ kind: 'message', from: from.nick, to: to.id, text: msg.text, action: msg.action, server: from.server, ...details(msg) });
    const target = this.sessionByNick(to.id, from.server);
    if (target) later(() => target.emit('message', { id: from.nick, ...(from.server ? { server: from.server } : {}) }, msg));
  }

  roomSay(from: FakeSession, r: FakeRoomState, msg: TextMessage): void {
    this.sent.push({ kind: 'room-message', from: from.nick, to: r.id, text: msg.text, action: msg.action, server: from.server, ...details(msg) });
    for (const s of this.inRoom(r)) {
      if (s === from && !this.echo) continue;
      later(() => s.emit('roomMessage', this.legacyRoom(r), from.nick, msg));
    }
  }

  join(s: FakeSession, room: LegacyRoom, nick: string, password?: string): void {
    const r = this.room(room.id, s.server);
    later(() => {
      if (r.banned.has(norm(nick)) || r.banned.has(norm(s.username))) return s.emit('roomJoinFailed', this.legacyRoom(r), 'you are banned from this channel', 'forbidden');
      if (r.password !== null && r.password !== password) return s.emit('roomJoinFailed', this.legacyRoom(r), 'bad channel key', 'not-authorized');
      let own = s.nick;
      if (norm(nick) !== norm(s.nick)) {
        // The network keeps one nick per connection; a free one is taken.
        if (!this.sessionByNick(nick, s.server) && ![...r.occupants.keys()].some((n) => norm(n) === norm(nick))) s.nick = own = nick;
      }
      const first = r.occupants.size === 0;
      const occ: Occupant = { nick: own, role: first ? 'moderator' : 'participant', affiliation: first ? 'owner' : 'none', contact: { id: own, ...(s.server ? { server: s.server } : {}) } };
      for (const other of this.inRoom(r)) later(() => other.emit('occupantJoined', this.legacyRoom(r), occ));
      r.occupants.set(own, occ);
      s.joined.add(norm(r.id));
      s.emit('roomJoined', this.legacyRoom(r), own, [...r.occupants.values()], r.subject);
    });
  }

  leave(s: FakeSession, room: LegacyRoom, reason: string | null): void {
    const r = this.findRoom(room.id, s.server);
    if (!r || !s.joined.has(norm(r.id))) return;
    s.joined.delete(norm(r.id));
    r.occupants.delete(s.nick);
    for (const other of this.inRoom(r)) later(() => other.emit('occupantLeft', this.legacyRoom(r), s.nick, reason, null));
    later(() => s.emit('occupantLeft', this.legacyRoom(r), s.nick, reason, null));
  }

  topic(s: FakeSession, room: LegacyRoom, subject: string): void {
    const r = this.findRoom(room.id, s.server);
    if (!r) throw new Error('no such channel');
    this.sent.push({ kind: 'subject', from: s.nick, to: r.id, text: subject, server: s.server });
    r.subject = subject;
    r.subjectBy = s.nick;
    // Like IRC TOPIC: everyone in the channel sees it, the setter too.
    for (const member of this.inRoom(r)) later(() => member.emit('subject', this.legacyRoom(r), subject, s.nick));
  }

  rename(s: FakeSession, nick: string): void {
    if (this.sessionByNick(nick, s.server) && this.sessionByNick(nick, s.server) !== s) throw new Error(`nickname ${nick} is already in use`);
    for (const r of this.rooms.values()) if (r.server === s.server && [...r.occupants.keys()].some((n) => norm(n) === norm(nick) && n !== s.nick)) throw new Error(`nickname ${nick} is already in use`);
    const old = s.nick;
    s.nick = nick;
    for (const r of this.rooms.values()) {
      if (r.server !== s.server || !r.occupants.has(old)) continue;
      const occ = r.occupants.get(old)!;
      r.occupants.delete(old);
      r.occupants.set(nick, { ...occ, nick, contact: { id: nick, ...(s.server ? { server: s.server } : {}) } });
      for (const other of this.inRoom(r)) later(() => other.emit('nickChanged', this.legacyRoom(r), old, nick));
    }
  }

  kickFrom(s: FakeSession, room: LegacyRoom, nick: string, reason: string | null): void {
    const r = this.findRoom(room.id, s.server);
    if (!r) throw new Error('no such channel');
    if (r.occupants.get(s.nick)?.role !== 'moderator') throw new Error("you're not channel operator");
    if (!r.occupants.has(nick)) throw new Error('no such nick');
    this.sent.push({ kind: 'kick', from: s.nick, to: nick, text: reason ?? undefined, server: s.server });
    this.remoteKick(r.id, nick, s.nick, reason, r.server);
  }

  quit(s: FakeSession, reason: string | null): void {
    for (const r of this.rooms.values()) {
      if (r.server !== s.server || !s.joined.has(norm(r.id))) continue;
      r.occupants.delete(s.nick);
      for (const other of this.inRoom(r)) if (other !== s) later(() => other.emit('occupantLeft', this.legacyRoom(r), s.nick, reason, null));
    }
    s.joined.clear();
    this.sessions.delete(s);
  }

  // ---- login ----

  async login(req: LoginRequest, fields: RegistrationField[]): Promise<FakeSession> {
    void fields;
    const username = req.credentials.username ?? '';
    const server = this.servers ? (req.server ?? req.credentials.server ?? this.servers[0]) : undefined;
    if (this.loginDelayMs) await new Promise((r) => setTimeout(r, this.loginDelayMs));
    const scripted = this.failNextLogins.shift();
    if (scripted === 'hang') {
      this.logins.push({ userJid: req.userJid, server, username, ok: false });
      return new Promise<never>(() => undefined);
    }
    if (scripted === 'network') {
      this.logins.push({ userJid: req.userJid, server, username, ok: false });
      throw new LegacyNetworkError(`connection to ${server ?? this.network} refused`);
    }
    if (this.servers && server !== undefined && !this.servers.includes(server)) {
      this.logins.push({ userJid: req.userJid, server, username, ok: false });
      throw new LegacyNetworkError(`unknown server ${server}`);
    }
    const expected = this.accounts.get(username);
    // The message quotes what was sent, password included, as careless servers do: the kit must scrub it.
    if (scripted === 'auth' || expected === undefined || expected !== req.credentials.password) {
      this.logins.push({ userJid: req.userJid, server, username, ok: false });
      throw new LegacyAuthError(`invalid password for ${username} (got "${req.credentials.password ?? ''}")`);
    }
    this.logins.push({ userJid: req.userJid, server, username, ok: true, ...(req.state !== undefined ? { state: req.state } : {}) });
    const s = new FakeSession(this, req.userJid, username, req.credentials.nick || username, server, req.settings ?? {});
    this.sessions.add(s);
    later(() => s.emit('connected', server ?? this.network, username));
    return s;
  }
}

export class FakeSession extends EventEmitter<LegacySessionEvents> implements LegacySession {
  /** Lower-cased ids of joined rooms. */
  readonly joined = new Set<string>();
  /** Contacts the kit asked to watch (lower-cased). */
  readonly watching = new Set<string>();
  ownPresence: { show: string; status: string | null } | null = null;
  closed = false;
  loggedOutWith: string | null = null;

  constructor(
    private readonly net: FakeNetwork,
    readonly userJid: string,
    readonly username: string,
    public nick: string,
    readonly server: string | undefined,
    readonly settings: Record<string, string>,
  ) {
    super();
  }

  private check(): void {
    if (this.closed) throw new LegacyNetworkError('not connected');
  }

  async roomDirectory({ node, max }: DirectoryRequest): Promise<DirectoryListing | null> {
    this.check();
    this.net.directoryCalls.push({ node: node ?? '', server: this.server, max });
    if (this.net.directoryFailure !== null) throw new LegacyNetworkError(this.net.directoryFailure);
    const items = this.net.directory.get(node);
    if (!items) return node === null ? { items: [], complete: true } : null;
    // Like a careless network, it gives everything it has, whatever max says: the kit cuts.
    return { items: [...items], complete: true };
  }

  async runCommand(node: string, values: Record<string, string>): Promise<string> {
    const def = this.net.commands?.find((c) => c.node === node);
    if (!def) throw new CommandFailure('no such command', 'item-not-found');
    if (values.fail) throw new CommandFailure(`failed as asked: ${values.fail}`, 'not-acceptable');
    const shown = def.fields.map((f) => `${f.name}=${f.secret ? `(${(values[f.name] ?? '').length} characters)` : (values[f.name] ?? '')}`);
    return `${node} ran for ${this.username}: ${shown.join(', ')}`;
  }

  async gatewayMessage(text: string): Promise<void> {
    if (this.net.commands) this.emit('gatewayMessage', `heard: ${text}`);
  }

  close(): void {
    this.closed = true;
    this.net.quit(this, 'connection lost');
  }

  async sendMessage(to: LegacyContact, message: TextMessage): Promise<void> {
    this.check();
    this.net.deliverPrivate(this, to, message);
  }

  async sendRoomMessage(room: LegacyRoom, message: TextMessage): Promise<void> {
    this.check();
    const r = this.net.findRoom(room.id, this.server);
    if (!r || !this.joined.has(norm(r.id))) throw new Error('cannot send to channel');
    this.net.roomSay(this, r, message);
  }

  /** How often the kit asked to join a room. */
  joinCalls = 0;

  async joinRoom(room: LegacyRoom, nick: string, password?: string): Promise<void> {
    this.check();
    this.joinCalls++;
    this.net.join(this, room, nick, password);
  }

  async leaveRoom(room: LegacyRoom, reason?: string): Promise<void> {
    this.check();
    this.net.leave(this, room, reason ?? null);
  }

  async setSubject(room: LegacyRoom, subject: string): Promise<void> {
    this.check();
    this.net.topic(this, room, subject);
  }

  async changeNick(_room: LegacyRoom | null, nick: string): Promise<void> {
    this.check();
    this.net.rename(this, nick);
  }

  async kick(room: LegacyRoom, nick: string, reason?: string): Promise<void> {
    this.check();
    this.net.kickFrom(this, room, nick, reason ?? null);
  }

  async logout(reason?: string): Promise<void> {
    this.loggedOutWith = reason ?? '';
    if (!this.closed) {
      this.closed = true;
      this.net.quit(this, reason ?? 'quit');
    }
  }

  async addContact(contact: LegacyContact): Promise<void> {
    this.watching.add(norm(contact.id));
    const p = this.net.remotePresence.get(norm(contact.id));
    if (p) setImmediate(() => this.emit('contactPresence', contact, p.show, p.status));
  }

  async removeContact(contact: LegacyContact): Promise<void> {
    this.watching.delete(norm(contact.id));
  }

  async setPresence(show: 'available' | 'away' | 'dnd' | 'xa', status: string | null): Promise<void> {
    this.ownPresence = { show, status };
    this.net.sent.push({ kind: 'presence', from: this.nick, to: '', text: `${show}${status ? ` ${status}` : ''}`, server: this.server });
  }

  async markRead(where: LegacyContact | LegacyRoom, messageId: string): Promise<void> {
    this.net.sent.push({ kind: 'read', from: this.nick, to: where.id, id: messageId, server: this.server });
  }

  async invite(room: LegacyRoom, contact: LegacyContact, reason?: string): Promise<void> {
    this.check();
    this.net.sent.push({ kind: 'invite', from: this.nick, to: contact.id, text: room.id + (reason ? ` ${reason}` : ''), server: this.server });
  }

  async sendTyping(to: LegacyContact | LegacyRoom, state: 'composing' | 'paused' | 'active'): Promise<void> {
    this.net.sent.push({ kind: 'typing', from: this.nick, to: to.id, text: state, server: this.server });
  }
}

/** The adapter over a FakeNetwork. */
export class FakeAdapter implements NetworkAdapter {
  readonly network: string;
  readonly name: string;
  readonly multiServer: boolean;
  readonly defaultServer: string | undefined;
  readonly echoesRoomMessages: boolean;
  readonly registrationFields: RegistrationField[];
  readonly settingsFields: RegistrationField[] = [{ name: 'quitMessage', label: 'Quit message', type: 'text-single', required: false, secret: false }];
  readonly commands: AdapterCommand[] | undefined;

  constructor(readonly net: FakeNetwork) {
    this.network = net.network;
    this.name = net.name;
    this.multiServer = net.servers !== null;
    this.defaultServer = net.servers?.[0];
    this.echoesRoomMessages = net.echo;
    this.commands = net.commands;
    this.registrationFields = [
      { name: 'username', label: 'User name', type: 'text-single', required: true, secret: false },
      { name: 'password', label: 'Password', type: 'text-private', required: true, secret: true },
      { name: 'nick', label: 'Nickname', type: 'text-single', required: false, secret: false, description: 'Defaults to the user name' },
      { name: 'realname', label: 'Real name', type: 'text-single', required: false, secret: false },
      ...(net.servers ? [{ name: 'server', label: 'Server', type: 'list-single' as const, required: false, secret: false, options: net.servers, default: net.servers[0] }] : []),
    ];
  }

  isRoomId(id: string): boolean {
    return /^[#&+!]/.test(id);
  }

  login(request: LoginRequest): Promise<LegacySession> {
    return this.net.login(request, this.registrationFields);
  }

  credentialsToStore(_session: LegacySession, given: Credentials): Credentials {
    return given;
  }
}
