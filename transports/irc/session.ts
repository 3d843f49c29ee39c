/**
 * One user's connection to one IRC server, on irc-framework.
 *
 * irc-framework does the protocol plumbing (line parsing, CAP negotiation, SASL PLAIN, PING/PONG,
 * NAMES aggregation, mode parsing); this class keeps the channel state the kit needs (members and
 * their prefixes, topics), turns IRC into LegacySession events, and writes every user-caused line
 * through flood control.
 *
 * Lifecycle: `start()` resolves once the server welcomed us, sent its ISUPPORT and MOTD, and (if
 * configured) NickServ accepted our password. After a lost connection the session emits
 * `disconnected(reason, final)` once and is dead: it never reconnects by itself. The kit reconnects
 * by calling `login` again (with its own backoff) and re-joins the rooms its users are in; the
 * per-server autojoin channels are joined by every new session by itself.
 */
import IRC, { type Client, type IrcFrameworkMessage } from 'irc-framework';
import {
  LegacyAuthError,
  LegacyNetworkError,
  type AdapterLogger,
  type LegacyContact,
  type LegacyRoom,
  type LegacySession,
  type LegacySessionEvents,
  type Occupant,
  type TextMessage,
} from '../kit/adapter.js';
import { LegacySessionEmitter } from '../kit/session-emitter.js';
import type { OccupantTable } from '../kit/occupants.js';
import { IrcCommandError } from './errors.js';
import { SendQueue, type FloodOptions } from './flood.js';
import { DEFAULT_PREFIXES, roleFor, type PrefixMode } from './roles.js';
import { isValidChannel, isValidNick, type IrcServerSettings } from './settings.js';
import { sanitizeOutgoing, splitMessage, stripFormatting, utf8Length } from './text.js';
import { GatehouseIrcTransport, TransportError, type TransportSettings } from './transport.js';

export interface IrcSessionOptions {
  flood: FloodOptions;
  connectTimeoutMs: number;
  /** From the socket being open to the end of the MOTD. */
  registrationTimeoutMs: number;
  nickservTimeoutMs: number;
  /** How long kick, topic, nick and part wait for the server's answer. */
  commandTimeoutMs: number;
  joinTimeoutMs: number;
  pingIntervalS: number;
  pingTimeoutS: number;
  /** Alternative nicks tried on a collision at login (nick_, nick__, …). */
  maxNickAttempts: number;
  /** IRC's line limit, CRLF included. */
  lineLimit: number;
  maxIncomingLineBytes: number;
  /** A message needing more IRC lines than this is refused (not-acceptable) instead of flooding the channel for minutes. */
  maxLinesPerMessage: number;
  /** Forward the message of the day as a serverMessage after login. */
  forwardMotd: boolean;
  ca?: string | string[];
}

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

type Match = (m: IrcFrameworkMessage) => true | Error | undefined;

interface Waiter {
  match: Match;
  settle: (err?: Error) => void;
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

const NICK_IN_USE = new Set(['433', '436', '437']);
const NICKSERV_OK = /you are now (identified|logged in|recognized)|password accepted|successfully identified|you are already (identified|logged in)/i;
const NICKSERV_BAD = /(invalid|incorrect|wrong|bad) password|password (is )?(incorrect|invalid|wrong)|authentication failed|(is not|isn't|not) (a )?registered|access denied|identification failed/i;

export class IrcSession extends LegacySessionEmitter implements LegacySession {
  protected readonly network = 'irc';

  protected override logContext(): Record<string, string> {
    return { server: this.server };
  }

  readonly server: string;
  private readonly client: Client;
  private readonly queue: SendQueue;
  private readonly channels = new Map<string, ChannelState>();
  private readonly waiters = new Set<Waiter>();
  /** connecting: before 001; registered: waiting for the MOTD; identifying: waiting for NickServ. */
  private state: 'connecting' | 'registered' | 'identifying' | 'ready' | 'closed' = 'connecting';
  private loggingOut = false;
  private ownNick: string;
  private ownIdent: string | null = null;
  private ownHost: string | null = null;
  private nickAttempt = 0;
  private nickMaxLen = Infinity;
  private authFailure: string | null = null;
  /** A login failure decided by us (wins over what the socket says afterwards). */
  private loginError: Error | null = null;
  private banned = false;
  private errorReason: string | null = null;
  private transportError: TransportError | null = null;
  private pingTimedOut = false;
  private saslDone = false;
  private motd: string[] = [];
  private readonly early: TextMessage[] = [];
  private loginSettle: ((err?: Error) => void) | null = null;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly settings: IrcServerSettings,
    private readonly opts: IrcSessionOptions,
    protected readonly log: AdapterLogger,
  ) {
    super();
    this.server = settings.host;
    this.ownNick = settings.nick;
    const transport: TransportSettings = {
      host: settings.host,
      port: settings.port,
      tls: settings.tls,
      verifyCertificate: settings.verifyCertificate,
      fingerprint256: settings.certificateFingerprint,
      ca: opts.ca,
      connectTimeoutMs: opts.connectTimeoutMs,
      maxLineBytes: opts.maxIncomingLineBytes,
    };
    this.client = new IRC.Client({
      host: settings.host,
      port: settings.port,
      tls: settings.tls,
      nick: settings.nick,
      username: settings.username,
      gecos: settings.realname,
      password: settings.password ?? undefined,
      // An empty account object keeps irc-framework from reusing the server password for SASL.
      account: settings.sasl ? { account: settings.sasl.account, password: settings.sasl.password } : {},
      sasl_disconnect_on_fail: false,
      // No CTCP VERSION answer: it would tell everyone which software (and version) relays this user.
      version: '',
      auto_reconnect: false,
      ping_interval: opts.pingIntervalS,
      ping_timeout: opts.pingTimeoutS,
      enable_echomessage: false,
      transport: GatehouseIrcTransport,
      gatehouse: transport,
    });
    this.queue = new SendQueue((line, done) => {
      if (!this.client.connected) {
        done(new LegacyNetworkError(`not connected to ${this.server}`));
        return;
      }
      (this.client.connection as unknown as { write(l: string, cb: () => void): void }).write(line, () => done());
    }, opts.flood);
    this.bind();
  }

  // ---------------------------------------------------------------- public state

  /** Our current nick on this server. */
  get nick(): string {
    return this.ownNick;
  }

  /** The channels this session joins by itself after every login. */
  get autojoin(): readonly string[] {
    return this.settings.autojoin;
  }

  /** Channels we are in (ids as the kit knows them). */
  get joinedRooms(): LegacyRoom[] {
    return [...this.channels.values()].filter((c) => c.joined).map((c) => c.room);
  }

  get connected(): boolean {
    return this.state === 'ready';
  }

  // ---------------------------------------------------------------- login

  /** Connects and registers; rejects with LegacyAuthError or LegacyNetworkError. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      const deadline = this.timer(() => {
        this.finishLogin(new LegacyNetworkError(`${this.server} did not complete the login in time`));
      }, this.opts.connectTimeoutMs + this.opts.registrationTimeoutMs + (this.settings.nickservPassword ? this.opts.nickservTimeoutMs : 0));
      this.loginSettle = (err) => {
        this.clearTimer(deadline);
        this.loginSettle = null;
        if (err) reject(err);
        else resolve();
      };
      this.log.info('irc connecting', { server: this.server, port: this.settings.port, tls: this.settings.tls });
      if (this.settings.tls && !this.settings.verifyCertificate && !this.settings.certificateFingerprint) {
        this.log.warn('irc TLS certificate verification is off for this server', { server: this.server });
      }
      this.client.connect();
    });
  }

  private finishLogin(err?: Error): void {
    const settle = this.loginSettle;
    if (!settle) return;
    if (err) {
      this.state = 'closed';
      this.teardown(err instanceof LegacyAuthError ? err : new LegacyNetworkError(err.message));
      // Error texts are built here from server names and server replies: they never hold a password.
      this.log.info('irc login failed', { server: this.server, kind: err instanceof LegacyAuthError ? 'auth' : 'network', reason: err.message });
      settle(err);
      return;
    }
    this.state = 'ready';
    this.log.info('irc connected', { server: this.server, nick: this.ownNick });
    settle();
    // After the kit has attached its listeners to the resolved session:
    setImmediate(() => {
      if (this.state !== 'ready') return;
      this.safeEmit('connected', this.server, this.settings.sasl?.account ?? this.ownNick);
      for (const m of this.early.splice(0)) this.safeEmit('serverMessage', this.server, m);
      for (const channel of this.settings.autojoin) void this.joinRoom({ id: channel, server: this.server }, this.ownNick).catch(() => undefined);
    });
  }

  /** After 001: wait for ISUPPORT and the MOTD, then identify to NickServ, then we are usable. */
  private afterMotd(): void {
    if (this.state !== 'registered') return;
    if (this.opts.forwardMotd && this.motd.length) this.early.push({ text: this.motd.join('\n'), notice: true });
    this.motd = [];
    if (this.settings.nickservPassword && !this.settings.sasl) {
      this.state = 'identifying';
      void this.identify().then(
        () => this.finishLogin(),
        (err: Error) => this.finishLogin(err),
      );
    } else {
      this.finishLogin();
    }
  }

  private identify(): Promise<void> {
    const password = this.settings.nickservPassword!;
    const args = this.client.caseCompare(this.ownNick, this.settings.nick) ? password : `${this.settings.nick} ${password}`;
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        match: (m) => {
          if (m.command === 'NOTICE' && this.client.caseCompare(m.nick, 'NickServ')) {
            const text = stripFormatting(m.params[m.params.length - 1] ?? '');
            if (NICKSERV_BAD.test(text)) return new LegacyAuthError('NickServ rejected the password');
            if (NICKSERV_OK.test(text)) return true;
            return undefined;
          }
          if (m.command === '900') return true;
          if ((m.command === '401' || m.command === '440') && this.client.caseCompare(m.params[1] ?? '', 'NickServ')) {
            return new LegacyNetworkError(`NickServ is not available on ${this.server}`);
          }
          return undefined;
        },
        settle: (err) => {
          this.clearTimer(waiter.timer);
          this.waiters.delete(waiter);
          if (err) reject(err);
          else resolve();
        },
        timer: null,
      };
      this.waiters.add(waiter);
      waiter.timer = this.timer(() => waiter.settle(new LegacyNetworkError(`NickServ on ${this.server} did not answer`)), this.opts.nickservTimeoutMs);
      // The password goes on the wire only; it is never logged.
      this.queue.send(`PRIVMSG NickServ :IDENTIFY ${args}`).catch((err: Error) => waiter.settle(err));
    });
  }

  // ---------------------------------------------------------------- irc-framework events

  private bind(): void {
    const c = this.client;
    c.use((_client, raw) => {
      raw.use((_command, message, _line, _c, next) => {
        this.guard('raw', () => this.onRaw(message));
        next();
      });
    });
    const on = (event: string, fn: (e: any) => void) => c.on(event, (e: any) => this.guard(event, () => fn(e)));
    on('socket close', (err: unknown) => this.onSocketClose(err));
    on('ping timeout', () => (this.pingTimedOut = true));
    on('registered', (e: { nick: string }) => this.onRegistered(e.nick));
    on('sasl failed', (e: { reason: string }) => {
      this.authFailure = e.reason === 'capability_missing' || e.reason === 'unsupported_mechanism' ? `${this.server} does not offer SASL PLAIN` : 'SASL authentication failed';
      this.client.quit();
    });
    on('loggedin', () => (this.saslDone = true));
    on('join', (e) => this.onJoin(e));
    on('userlist', (e) => this.onUserlist(e));
    on('topic', (e) => this.onTopic(e));
    on('part', (e) => this.onLeave(e.channel, e.nick, e.message, null));
    on('kick', (e) => this.onLeave(e.channel, e.kicked, e.message, e.nick));
    on('quit', (e) => this.onQuit(e.nick, e.message));
    on('nick', (e) => this.onNick(e.nick, e.new_nick));
    on('mode', (e) => this.onMode(e));
    on('privmsg', (e) => this.onText(e, { }));
    on('action', (e) => this.onText(e, { action: true }));
    on('notice', (e) => this.onText(e, { notice: true }));
    on('wallops', (e) => this.serverText({ text: stripFormatting(`${e.nick ? e.nick + ': ' : ''}${e.message}`), notice: true }));
    on('invite', (e) => {
      if (!e.nick || !this.client.caseCompare(e.invited ?? '', this.ownNick)) return;
      this.safeEmit('message', this.contact(e.nick), { text: `${e.nick} invites you to ${e.channel}`, notice: true });
    });
    on('ctcp request', (e) => this.log.debug('irc CTCP request ignored', { server: this.server, type: String(e.type ?? '') }));
  }

  private onRegistered(nick: string): void {
    this.ownNick = nick;
    if (this.settings.sasl && !this.saslDone) {
      this.authFailure ??= `${this.server} did not complete SASL authentication`;
      this.client.quit();
      return;
    }
    this.state = 'registered';
    // ISUPPORT follows 001; the MOTD (or ERR_NOMOTD) ends the burst. Servers that send neither still get in.
    this.timer(() => this.afterMotd(), 10_000);
  }

  private onRaw(m: IrcFrameworkMessage): void {
    let handled = false;
    for (const w of [...this.waiters]) {
      const r = w.match(m);
      if (r === undefined) continue;
      handled = true;
      w.settle(r === true ? undefined : r);
    }
    const cmd = m.command;
    const p = m.params;
    switch (cmd) {
      case '001': {
        const mask = /(\S+)!(\S+)@(\S+)$/.exec(p[p.length - 1] ?? '');
        if (mask) ((this.ownIdent = mask[2]!), (this.ownHost = mask[3]!));
        return;
      }
      case '396': // displayed host
        if (p[1]) this.ownHost = p[1];
        return;
      case '903':
        this.saslDone = true;
        return;
      case '375':
        this.motd = [];
        return;
      case '372':
        this.motd.push(stripFormatting(p[p.length - 1] ?? ''));
        return;
      case '376':
      case '422':
        if (this.state === 'registered') this.afterMotd();
        return;
      case '464':
        this.authFailure = `${this.server} rejected the server password`;
        return;
      case '465':
        this.banned = true;
        this.authFailure = `banned from ${this.server}: ${stripFormatting(p[p.length - 1] ?? '')}`;
        return;
      case 'ERROR': {
        const reason = stripFormatting(p[p.length - 1] ?? '');
        this.errorReason = reason;
        if (this.state !== 'ready' && /password|passwd/i.test(reason)) this.authFailure ??= `${this.server} rejected the server password`;
        if (/\b([kgzd]-?lined|banned)\b/i.test(reason)) this.banned = true;
        return;
      }
      case '324': // RPL_CHANNELMODEIS
        this.onChannelModes(p[1] ?? '', p[2] ?? '');
        return;
    }
    if (this.state === 'connecting' && (NICK_IN_USE.has(cmd) || cmd === '432')) {
      this.onLoginNickRefused(cmd);
      return;
    }
    if (/^[45]\d\d$/.test(cmd)) {
      const failure = JOIN_FAILURES[cmd];
      const channel = p[1] ?? '';
      if (failure && this.channels.get(this.key(channel))?.joined === false) {
        this.joinFailed(channel, stripFormatting(p[p.length - 1] ?? cmd), failure);
        return;
      }
      if (handled || this.state !== 'ready') return;
      // Anything else the server refused: tell the user, like a client's status window would.
      const what = p.slice(1, -1).join(' ');
      this.serverText({ text: stripFormatting(`${what ? what + ': ' : ''}${p[p.length - 1] ?? cmd}`), notice: true });
    }
  }

  /** 433/436/437/432 before 001: try nick_, nick__, … (shortened when the server finds them too long). */
  private onLoginNickRefused(cmd: string): void {
    const tried = this.nickAttempt === 0 ? this.settings.nick : this.candidate(this.nickAttempt);
    if (cmd === '432') {
      if (this.nickAttempt === 0) {
        this.loginError = new LegacyAuthError(`${this.server} does not accept the nickname ${this.settings.nick}`);
        this.client.quit();
        return;
      }
      this.nickMaxLen = Math.min(this.nickMaxLen, tried.length - 1);
      const shorter = this.candidate(this.nickAttempt);
      if (shorter !== tried && shorter.length <= this.nickMaxLen && this.nickMaxLen >= 2) {
        this.client.changeNick(shorter); // same attempt, shortened to fit
        return;
      }
    }
    this.nickAttempt++;
    if (this.nickAttempt > this.opts.maxNickAttempts) {
      this.loginError = new LegacyNetworkError(`the nickname ${this.settings.nick} and its alternatives are in use on ${this.server}`);
      this.client.quit();
      return;
    }
    const next = this.candidate(this.nickAttempt);
    this.log.debug('irc nick in use at login, trying another', { server: this.server, attempt: this.nickAttempt });
    this.client.changeNick(next);
  }

  private candidate(attempt: number): string {
    const suffix = '_'.repeat(attempt);
    const base = this.settings.nick;
    if (base.length + suffix.length <= this.nickMaxLen) return base + suffix;
    return base.slice(0, Math.max(1, this.nickMaxLen - suffix.length)) + suffix;
  }

  private onSocketClose(err: unknown): void {
    if (err instanceof TransportError) this.transportError = err;
    else if (err) this.transportError = new TransportError(`connection to ${this.server} failed`, 'UNKNOWN');
    if (this.loginSettle) {
      let failure: Error;
      if (this.loginError) failure = this.loginError;
      else if (this.authFailure) failure = new LegacyAuthError(this.authFailure);
      else if (this.transportError) failure = new LegacyNetworkError(this.transportError.message);
      else if (this.errorReason) failure = new LegacyNetworkError(`${this.server} closed the connection: ${this.errorReason}`);
      else failure = new LegacyNetworkError(`${this.server} closed the connection`);
      this.finishLogin(failure);
      return;
    }
    if (this.state === 'closed') return;
    this.state = 'closed';
    const reason = this.loggingOut
      ? 'logged out'
      : this.pingTimedOut
        ? `ping timeout on ${this.server}`
        : this.errorReason
          ? `${this.server} closed the connection: ${this.errorReason}`
          : this.transportError
            ? this.transportError.message
            : `connection to ${this.server} lost`;
    this.teardown(new LegacyNetworkError(`not connected to ${this.server}`));
    if (this.loggingOut) return;
    this.log.info('irc disconnected', { server: this.server, final: this.banned, reason });
    this.safeEmit('disconnected', reason, this.banned);
  }

  /** Fails everything pending and forgets channel state. */
  private teardown(err: Error): void {
    this.queue.close(err);
    for (const w of [...this.waiters]) w.settle(err);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const ch of this.channels.values()) for (const done of ch.waiting.splice(0)) done();
    this.channels.clear();
    // A polite QUIT, then the socket is destroyed (no reconnection: auto_reconnect is off).
    if (this.client.connected) this.client.connection.end(this.client.rawString('QUIT', 'Gatehouse'), true);
  }

  // ---------------------------------------------------------------- channels

  private key(channel: string): string {
    return this.client.caseLower(channel);
  }

  private roomOf(channel: string): LegacyRoom {
    return this.channels.get(this.key(channel))?.room ?? { id: channel, server: this.server };
  }

  private contact(nick: string): LegacyContact {
    return { id: nick, server: this.server };
  }

  private prefixes(): PrefixMode[] {
    const p = this.client.network.options.PREFIX;
    return Array.isArray(p) && p.length ? p : DEFAULT_PREFIXES;
  }

  private occupant(ch: ChannelState, nick: string, modes: Set<string>): Occupant {
    return { nick, ...roleFor(modes, this.prefixes(), ch.moderated), contact: this.contact(nick) };
  }

  private isSelf(nick: string | undefined): boolean {
    return !!nick && this.client.caseCompare(nick, this.ownNick);
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

  // ---------------------------------------------------------------- messages

  private onText(
    e: { nick: string; target: string; message: string; from_server?: boolean; time?: number; tags?: Record<string, string | true> },
    kind: { action?: boolean; notice?: boolean },
  ): void {
    const text = stripFormatting(e.message ?? '');
    if (!text) return;
    const msg: TextMessage = { text, ...kind };
    if (e.time) msg.timestamp = new Date(e.time);
    const msgid = e.tags?.msgid;
    if (typeof msgid === 'string' && msgid) msg.id = msgid;
    const target = e.target ?? '';
    const fromServer = e.from_server || !e.nick || this.client.caseCompare(e.nick, this.client.network.server ?? '');
    if (fromServer || target === '*' || target.startsWith('$')) {
      this.serverText({ ...msg, notice: true });
      return;
    }
    if (this.isChannel(target)) {
      this.safeEmit('roomMessage', this.roomOf(target), e.nick, msg);
      return;
    }
    this.safeEmit('message', this.contact(e.nick), msg);
  }

  private serverText(msg: TextMessage): void {
    if (!msg.text || this.loggingOut) return;
    if (this.state === 'ready') this.safeEmit('serverMessage', this.server, msg);
    else if (this.early.length < 50) this.early.push(msg);
  }

  private isChannel(target: string): boolean {
    const types = this.client.network.options.CHANTYPES;
    return Array.isArray(types) && types.length ? types.includes(target[0] ?? '') : /^[#&+!]/.test(target);
  }

  /** Bytes left for text in one line we send, after the prefix the server adds when relaying it. */
  private payloadBytes(command: string, target: string, action: boolean): number {
    const ident = this.ownIdent ?? `~${this.settings.username}`;
    const host = this.ownHost ?? 'x'.repeat(63);
    const prefix = 1 + utf8Length(this.ownNick) + 1 + utf8Length(ident) + 1 + utf8Length(host);
    const overhead = prefix + 1 + command.length + 1 + utf8Length(target) + 2 + 2 + (action ? 9 : 0);
    return Math.max(32, this.opts.lineLimit - overhead);
  }

  private lines(command: 'PRIVMSG' | 'NOTICE', target: string, message: TextMessage): { lines: string[]; text: string } {
    let text = sanitizeOutgoing(message.text ?? '');
    for (const url of message.attachments ?? []) if (!text.includes(url)) text += (text ? '\n' : '') + sanitizeOutgoing(url);
    const action = !!message.action && command === 'PRIVMSG';
    const chunks = splitMessage(text, this.payloadBytes(command, target, action));
    if (chunks.length > this.opts.maxLinesPerMessage) {
      throw new IrcCommandError(`the message is too long for IRC (${chunks.length} lines, at most ${this.opts.maxLinesPerMessage})`, 'not-acceptable');
    }
    return { lines: chunks.map((c) => (action ? `${command} ${target} :\x01ACTION ${c}\x01` : `${command} ${target} :${c}`)), text };
  }

  private ensureReady(): void {
    if (this.state !== 'ready') throw new LegacyNetworkError(`not connected to ${this.server}`);
  }

  async sendMessage(to: LegacyContact, message: TextMessage): Promise<void> {
    this.ensureReady();
    if (!isValidNick(to.id)) throw new IrcCommandError(`not a nickname: ${to.id}`, 'bad-request');
    const { lines } = this.lines(message.notice ? 'NOTICE' : 'PRIVMSG', to.id, message);
    await this.queue.sendAll(lines);
  }

  /**
   * Sends to a channel and then reports the message back as a roomMessage from our own nick (IRC
   * servers do not echo), carrying the kit's `id`, so the kit can reflect it like any MUC message.
   */
  async sendRoomMessage(room: LegacyRoom, message: TextMessage): Promise<void> {
    this.ensureReady();
    if (!isValidChannel(room.id)) throw new IrcCommandError(`not a channel: ${room.id}`, 'bad-request');
    const { lines, text } = this.lines(message.notice ? 'NOTICE' : 'PRIVMSG', room.id, message);
    if (!lines.length) return;
    await this.queue.sendAll(lines);
    const echo: TextMessage = { text, timestamp: new Date() };
    if (message.action) echo.action = true;
    if (message.notice) echo.notice = true;
    if (message.id) echo.id = message.id;
    if (message.replyTo) echo.replyTo = message.replyTo;
    this.safeEmit('roomMessage', this.roomOf(room.id), this.ownNick, echo);
  }

  // ---------------------------------------------------------------- commands

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

  private sameName(a: string | undefined, b: string): boolean {
    return a !== undefined && this.client.caseCompare(a, b);
  }

  /** Sends lines and waits until `match` accepts (true) or refuses (an Error) a reply. */
  private async command(lines: string[], match: Match): Promise<void> {
    let settle!: (err?: Error) => void;
    const done = new Promise<void>((resolve, reject) => (settle = (err) => (err ? reject(err) : resolve())));
    const waiter: Waiter = {
      match,
      settle: (err) => {
        this.waiters.delete(waiter);
        this.clearTimer(waiter.timer);
        settle(err);
      },
      timer: null,
    };
    this.waiters.add(waiter);
    try {
      await this.queue.sendAll(lines);
    } catch (err) {
      waiter.settle(err as Error);
      return done;
    }
    if (this.waiters.has(waiter)) {
      waiter.timer = this.timer(() => waiter.settle(new IrcCommandError(`${this.server} did not answer`, 'remote-server-timeout')), this.opts.commandTimeoutMs);
    }
    return done;
  }

  /** Ends the connection with QUIT; emits no 'disconnected'. */
  async logout(reason?: string): Promise<void> {
    if (this.state === 'closed') return;
    this.loggingOut = true;
    if (this.loginSettle) {
      this.finishLogin(new LegacyNetworkError('logged out'));
      return;
    }
    if (this.client.connected) {
      await Promise.race([this.queue.drained(), sleep(2000)]);
      const closed = new Promise<void>((resolve) => this.client.once('socket close', () => resolve()));
      this.client.quit(reason ? oneLine(sanitizeOutgoing(reason)) : 'Gatehouse');
      await Promise.race([closed, sleep(2000)]);
    }
    // (the socket closing normally got here first)
    if ((this.state as string) !== 'closed') {
      this.state = 'closed';
      this.teardown(new LegacyNetworkError('logged out'));
    }
    this.log.info('irc logged out', { server: this.server });
  }

  // ---------------------------------------------------------------- plumbing

  private timer(fn: () => void, ms: number): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.timers.delete(t);
      this.guard('timer', fn);
    }, ms);
    this.timers.add(t);
    return t;
  }

  private clearTimer(t: NodeJS.Timeout | null): void {
    if (!t) return;
    clearTimeout(t);
    this.timers.delete(t);
  }

  /** Runs a handler; an exception (ours or a listener's) is logged and never reaches the socket loop. */

}

function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, ' ');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref?.());
}
