/**
 * The channels of one IRC connection: joins and their outcome (roomJoined or roomJoinFailed),
 * members with their prefix modes in the kit's occupant table (joins, parts, kicks, quits, nick
 * changes, modes and roles), topics, and the channel commands (part, topic, kick, nick).
 */
import type { IrcFrameworkMessage } from 'irc-framework';
import type { AdapterLogger, LegacyRoom, LegacySessionEvents, Occupant } from '../kit/adapter.js';
import type { OccupantTable } from '../kit/occupants.js';
import { IrcConnection, oneLine } from './connection.js';
import type { IrcSessionOptions } from './link.js';
import { IrcCommandError } from './errors.js';
import { DEFAULT_PREFIXES, roleFor, type PrefixMode } from './roles.js';
import { isValidChannel, isValidNick, type IrcServerSettings } from './settings.js';
import { sanitizeOutgoing, stripFormatting } from './text.js';

interface ChannelState {
  room: LegacyRoom;
  joined: boolean;
  /** Members by nick, with their channel modes (prefix modes: +o, +v, ...). */
  members: OccupantTable<Set<string>>;
  topic: string | null;
  moderated: boolean;
  /** joinRoom() calls waiting for the outcome. */
  waiting: (() => void)[];
  timer: NodeJS.Timeout | null;
}

/** Numerics that refuse a JOIN, with the channel in params[1], mapped to MUC join errors. */
const JOIN_FAILURES: Record<string, LegacySessionEvents['roomJoinFailed'][2]> = {
  '403': 'item-not-found', // no such channel
  '405': 'service-unavailable', // too many channels
  '437': 'service-unavailable', // channel temporarily unavailable
  '470': 'item-not-found', // forwarded elsewhere
  '471': 'service-unavailable', // +l full
  '473': 'registration-required', // +i invite only
  '474': 'forbidden', // banned
  '475': 'not-authorized', // +k bad key
  '476': 'item-not-found', // bad channel mask
  '477': 'registration-required', // needs a registered nick
  '479': 'item-not-found', // illegal channel name
  '489': 'not-authorized', // TLS only
  '520': 'forbidden', // oper only (InspIRCd)
};

export abstract class IrcChannels extends IrcConnection {
  private readonly channels = new Map<string, ChannelState>();

  constructor(settings: IrcServerSettings, opts: IrcSessionOptions, log: AdapterLogger) {
    super(settings, opts, log);
    this.onIrc('join', (e) => this.onJoin(e));
    this.onIrc('userlist', (e) => this.onUserlist(e));
    this.onIrc('topic', (e) => this.onTopic(e));
    this.onIrc('part', (e) => this.onLeave(e.channel, e.nick, e.message, null));
    this.onIrc('kick', (e) => this.onLeave(e.channel, e.kicked, e.message, e.nick));
    this.onIrc('quit', (e) => this.onQuit(e.nick, e.message));
    this.onIrc('nick', (e) => this.onNick(e.nick, e.new_nick));
    this.onIrc('mode', (e) => this.onMode(e));
  }

  /** Channels we are in (ids as the kit knows them). */
  get joinedRooms(): LegacyRoom[] {
    return [...this.channels.values()].filter((c) => c.joined).map((c) => c.room);
  }

  protected forgetChannels(): void {
    for (const ch of this.channels.values()) for (const done of ch.waiting.splice(0)) done();
    this.channels.clear();
  }

  protected refusedJoin(m: IrcFrameworkMessage): boolean {
    const failure = JOIN_FAILURES[m.command];
    const channel = m.params[1] ?? '';
    if (!failure || this.channels.get(this.key(channel))?.joined !== false) return false;
    this.joinFailed(channel, stripFormatting(m.params[m.params.length - 1] ?? m.command), failure);
    return true;
  }

  protected channelModes(channel: string, modes: string): void {
    this.onChannelModes(channel, modes);
  }

  protected roomOf(channel: string): LegacyRoom {
    return this.channels.get(this.key(channel))?.room ?? { id: channel, server: this.server };
  }

  private prefixes(): PrefixMode[] {
    const p = this.client.network.options.PREFIX;
    return Array.isArray(p) && p.length ? p : DEFAULT_PREFIXES;
  }

  private occupant(ch: ChannelState, nick: string, modes: Set<string>): Occupant {
    return { nick, ...roleFor(modes, this.prefixes(), ch.moderated), contact: this.contact(nick) };
  }

  private onJoin(e: { nick: string; ident: string; hostname: string; channel: string }): void {
    if (!e.channel) return;
    const k = this.key(e.channel);
    if (this.isSelf(e.nick)) {
      if (e.ident) this.ownIdent = e.ident;
      if (e.hostname) this.ownHost = e.hostname;
      let ch = this.channels.get(k);
      if (!ch) {
        // A join we did not ask for (autojoin by the server, SAJOIN, a forward): report it too.
        ch = this.newChannel({ id: e.channel, server: this.server });
        this.channels.set(k, ch);
      }
      return; // roomJoined follows with the NAMES list
    }
    const ch = this.channels.get(k);
    if (!ch) return;
    const modes = new Set<string>();
    ch.members.join(e.nick, this.occupant(ch, e.nick, modes), modes);
  }

  private newChannel(room: LegacyRoom): ChannelState {
    return { room, joined: false, members: this.occupantTable(room, (nick) => this.key(nick)), topic: null, moderated: false, waiting: [], timer: null };
  }

  private onUserlist(e: { channel: string; users: { nick: string; modes: string[] }[] }): void {
    const ch = this.channels.get(this.key(e.channel));
    if (!ch) return;
    const members = e.users
      .filter((u) => u.nick)
      .map((u) => {
        const modes = new Set(u.modes);
        return { id: u.nick, occupant: this.occupant(ch, u.nick, modes), data: modes };
      });
    ch.members.replaceAll(members);
    if (ch.joined) return; // a NAMES refresh
    ch.joined = true;
    this.clearTimer(ch.timer);
    ch.timer = null;
    if (!ch.members.has(this.ownNick)) ch.members.join(this.ownNick, this.occupant(ch, this.ownNick, new Set()), new Set());
    ch.members.announced = true;
    this.emitJoined(ch);
    for (const done of ch.waiting.splice(0)) done();
    // Learn the channel modes (+m makes unvoiced members visitors).
    void this.queue.send(`MODE ${e.channel}`).catch(() => undefined);
  }

  private emitJoined(ch: ChannelState): void {
    this.safeEmit('roomJoined', ch.room, this.ownNick, ch.members.list(), ch.topic);
  }

  private joinFailed(channel: string, reason: string, condition: LegacySessionEvents['roomJoinFailed'][2]): void {
    const k = this.key(channel);
    const ch = this.channels.get(k);
    const room = ch?.room ?? { id: channel, server: this.server };
    if (ch) {
      this.channels.delete(k);
      this.clearTimer(ch.timer);
    }
    this.safeEmit('roomJoinFailed', room, reason, condition);
    for (const done of ch?.waiting.splice(0) ?? []) done();
  }

  private onTopic(e: { channel: string; topic: string; nick?: string }): void {
    const ch = this.channels.get(this.key(e.channel));
    const topic = stripFormatting(e.topic ?? '');
    if (!e.nick) {
      // RPL_TOPIC / RPL_NOTOPIC: part of a join (or an answer to TOPIC #chan)
      if (ch) ch.topic = topic || null;
      return;
    }
    if (ch) ch.topic = topic || null;
    this.safeEmit('subject', this.roomOf(e.channel), topic, e.nick);
  }

  private onLeave(channel: string, nick: string, reason: string | undefined, by: string | null): void {
    const k = this.key(channel);
    const ch = this.channels.get(k);
    const text = reason ? stripFormatting(reason) : null;
    if (this.isSelf(nick)) {
      const room = this.roomOf(channel);
      if (ch) {
        this.channels.delete(k);
        this.clearTimer(ch.timer);
        for (const done of ch.waiting.splice(0)) done();
      }
      this.safeEmit('occupantLeft', room, this.ownNick, text || null, by);
      return;
    }
    ch?.members.part(nick, text || null, by);
  }

  private onQuit(nick: string, reason: string | undefined): void {
    if (this.isSelf(nick)) return; // the socket closing tells the rest
    for (const ch of this.channels.values()) ch.members.part(nick, reason ? stripFormatting(reason) || null : null, null);
  }

  private onNick(oldNick: string, newNick: string): void {
    if (!oldNick || !newNick) return;
    const self = this.isSelf(oldNick);
    if (self) this.ownNick = newNick;
    for (const ch of this.channels.values()) ch.members.rename(oldNick, newNick, newNick, this.contact(newNick));
  }

  private onMode(e: { target: string; modes: { mode: string; param: string | null }[] }): void {
    const ch = this.channels.get(this.key(e.target ?? ''));
    if (!ch || !ch.joined) return;
    const prefixModes = new Set(this.prefixes().map((p) => p.mode));
    for (const { mode, param } of e.modes ?? []) {
      const adding = mode[0] === '+';
      const letter = mode.slice(1);
      if (prefixModes.has(letter) && param) {
        const modes = ch.members.get(param)?.data;
        if (modes) adding ? modes.add(letter) : modes.delete(letter);
      } else if (letter === 'm') {
        ch.moderated = adding;
      }
    }
    this.refreshRoles(ch);
  }

  private onChannelModes(channel: string, modes: string): void {
    const ch = this.channels.get(this.key(channel));
    if (!ch || !ch.joined) return;
    const moderated = /^\+[^-]*m/.test(modes);
    if (moderated === ch.moderated) return;
    ch.moderated = moderated;
    this.refreshRoles(ch);
  }

  /** Roles follow the members' prefix modes and the channel's +m; changes are reported. */
  private refreshRoles(ch: ChannelState): void {
    for (const m of ch.members.entries()) ch.members.update(m.id, roleFor(m.data, this.prefixes(), ch.moderated));
  }

  /**
   * Joins (the `nick` becomes our IRC nick if we are in no channel yet; IRC nicks are per server).
   * Resolves once roomJoined or roomJoinFailed was emitted. Joining a channel we are in re-emits
   * roomJoined with the current occupants.
   */
  async joinRoom(room: LegacyRoom, nick: string, password?: string): Promise<void> {
    this.ensureReady();
    if (!isValidChannel(room.id)) {
      this.safeEmit('roomJoinFailed', room, `not a valid IRC channel name: ${room.id}`, 'item-not-found');
      return;
    }
    const k = this.key(room.id);
    const existing = this.channels.get(k);
    if (existing?.joined) {
      this.emitJoined(existing);
      return;
    }
    if (existing) {
      await new Promise<void>((resolve) => existing.waiting.push(resolve));
      return;
    }
    if (nick && !this.isSelf(nick) && isValidNick(nick) && this.channels.size === 0) {
      await this.changeNick(null, nick).catch((err: Error) => this.log.debug('irc nick change before join failed', { server: this.server, reason: err.message }));
    }
    const ch = this.newChannel({ id: room.id, server: this.server, ...(room.name ? { name: room.name } : {}) });
    this.channels.set(k, ch);
    const done = new Promise<void>((resolve) => ch.waiting.push(resolve));
    const key = password && !/[\s\x00-\x1f,]/.test(password) ? ` ${password}` : '';
    try {
      await this.queue.send(`JOIN ${room.id}${key}`);
    } catch (err) {
      this.channels.delete(k);
      throw err;
    }
    if (this.channels.get(k) === ch && !ch.joined) {
      ch.timer = this.timer(() => this.joinFailed(room.id, `${this.server} did not answer the join`, 'service-unavailable'), this.opts.joinTimeoutMs);
    }
    await done;
  }

  async leaveRoom(room: LegacyRoom, reason?: string): Promise<void> {
    this.ensureReady();
    const k = this.key(room.id);
    if (!this.channels.has(k)) return;
    const chan = room.id;
    const text = reason ? ` :${oneLine(reason)}` : '';
    try {
      await this.command([`PART ${chan}${text}`], (m) => {
        if (m.command === 'PART' && this.isSelf(m.nick) && this.sameName(m.params[0], chan)) return true;
        if ((m.command === '442' || m.command === '403') && this.sameName(m.params[1], chan)) return new IrcCommandError('not in that channel', 'item-not-found');
        return undefined;
      });
    } catch (err) {
      // Not on the channel (or no answer): forget it anyway, and say so.
      if (this.channels.has(k)) this.onLeave(chan, this.ownNick, reason, null);
      if (!(err instanceof IrcCommandError)) throw err;
    }
  }

  async setSubject(room: LegacyRoom, subject: string): Promise<void> {
    this.ensureReady();
    const chan = room.id;
    if (!isValidChannel(chan)) throw new IrcCommandError(`not a channel: ${chan}`, 'bad-request');
    await this.command([`TOPIC ${chan} :${oneLine(sanitizeOutgoing(subject))}`], (m) => {
      if (m.command === 'TOPIC' && this.isSelf(m.nick) && this.sameName(m.params[0], chan)) return true;
      return this.channelError(m, chan);
    });
  }

  async kick(room: LegacyRoom, nick: string, reason?: string): Promise<void> {
    this.ensureReady();
    const chan = room.id;
    if (!isValidChannel(chan)) throw new IrcCommandError(`not a channel: ${chan}`, 'bad-request');
    if (!isValidNick(nick)) throw new IrcCommandError(`not a nickname: ${nick}`, 'bad-request');
    const text = reason ? ` :${oneLine(sanitizeOutgoing(reason))}` : '';
    await this.command([`KICK ${chan} ${nick}${text}`], (m) => {
      if (m.command === 'KICK' && this.isSelf(m.nick) && this.sameName(m.params[0], chan) && this.sameName(m.params[1], nick)) return true;
      if ((m.command === '441' || m.command === '401') && this.sameName(m.params[1], nick)) return new IrcCommandError(`${nick} is not in ${chan}`, 'item-not-found');
      return this.channelError(m, chan);
    });
  }

  /** Changes our nick on this server (in every channel: IRC nicks are per server, `room` is ignored). */
  async changeNick(_room: LegacyRoom | null, nick: string): Promise<void> {
    this.ensureReady();
    if (!isValidNick(nick)) throw new IrcCommandError(`not a valid nickname: ${nick}`, 'not-acceptable');
    if (nick === this.ownNick) return;
    const old = this.ownNick;
    await this.command([`NICK ${nick}`], (m) => {
      if (m.command === 'NICK' && this.client.caseCompare(m.nick, old)) return true;
      switch (m.command) {
        case '433':
        case '436':
          return new IrcCommandError(`the nickname ${nick} is in use`, 'conflict');
        case '432':
          return new IrcCommandError(`the nickname ${nick} is not allowed here`, 'not-acceptable');
        case '437':
        case '435':
        case '438':
        case '447':
        case '484':
          return new IrcCommandError(stripFormatting(m.params[m.params.length - 1] ?? 'nick change refused'), 'not-allowed');
      }
      return undefined;
    });
  }

  private channelError(m: IrcFrameworkMessage, chan: string): IrcCommandError | undefined {
    if (!this.sameName(m.params[1], chan)) return undefined;
    const reason = stripFormatting(m.params[m.params.length - 1] ?? m.command);
    switch (m.command) {
      case '482':
        return new IrcCommandError(reason || 'channel operator privileges needed', 'forbidden');
      case '442':
        return new IrcCommandError(reason || 'not in that channel', 'not-acceptable');
      case '403':
        return new IrcCommandError(reason || 'no such channel', 'item-not-found');
      case '477':
      case '489':
        return new IrcCommandError(reason, 'not-allowed');
    }
    return undefined;
  }
}
