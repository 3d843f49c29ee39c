/**
 * What every layer of an IRC session shares: the irc-framework client on the gateway's own socket
 * transport, the flood-controlled send queue, commands that wait for the server's answer, our
 * own nick and mask, and timers that end with the session.
 */
import IRC, { type Client, type IrcFrameworkMessage } from 'irc-framework';
import { LegacyNetworkError, type AdapterLogger, type LegacyContact, type TextMessage } from '../kit/adapter.js';
import { LegacySessionEmitter } from '../kit/session-emitter.js';
import { IrcCommandError } from './errors.js';
import { SendQueue, type FloodOptions } from './flood.js';
import type { IrcServerSettings } from './settings.js';
import { GatehouseIrcTransport, type TransportSettings } from './transport.js';
import type { IdentServer } from './identd.js';

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
  /** The gateway's identd: answers for each connection with the user's ident (settings.ident). */
  identd?: IdentServer | null;
}

type Match = (m: IrcFrameworkMessage) => true | Error | undefined;

export interface Waiter {
  match: Match;
  settle: (err?: Error) => void;
  timer: NodeJS.Timeout | null;
}

export abstract class IrcLink extends LegacySessionEmitter {
  protected readonly network = 'irc';

  protected override logContext(): Record<string, string> {
    return { server: this.server };
  }

  readonly server: string;
  protected readonly client: Client;
  protected readonly queue: SendQueue;
  protected readonly waiters = new Set<Waiter>();
  /** connecting: before 001; registered: waiting for the MOTD; identifying: waiting for NickServ. */
  protected state: 'connecting' | 'registered' | 'identifying' | 'ready' | 'closed' = 'connecting';
  protected loggingOut = false;
  protected ownNick: string;
  protected ownIdent: string | null = null;
  protected ownHost: string | null = null;
  protected readonly early: TextMessage[] = [];
  protected readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    protected readonly settings: IrcServerSettings,
    protected readonly opts: IrcSessionOptions,
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
    if (settings.saslExternal && settings.clientCertificate) transport.clientCertificate = settings.clientCertificate;
    const identd = opts.identd;
    const ident = settings.ident;
    if (identd && ident) transport.onTcpConnect = (local, remote) => identd.register(local, remote, ident);
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
      ...(settings.saslExternal && !settings.sasl ? { sasl_mechanism: 'EXTERNAL' } : {}),
      sasl_disconnect_on_fail: false,
      // No CTCP VERSION answer: it would tell everyone which software (and version) relays this user.
      version: '',
      auto_reconnect: false,
      ping_interval: opts.pingIntervalS,
      ping_timeout: opts.pingTimeoutS,
      enable_echomessage: false,
      transport: GatehouseIrcTransport,
      ...(settings.webirc ? { webirc: { password: settings.webirc.password, username: settings.webirc.gateway, hostname: settings.webirc.hostname, address: settings.webirc.address } } : {}),
      gatehouse: transport,
    });
    this.queue = new SendQueue((line, done) => {
      if (!this.client.connected) {
        done(new LegacyNetworkError(`not connected to ${this.server}`));
        return;
      }
      (this.client.connection as unknown as { write(l: string, cb: () => void): void }).write(line, () => done());
    }, opts.flood);
  }

  /** Our current nick on this server. */
  get nick(): string {
    return this.ownNick;
  }

  /** The channels this session joins by itself after every login. */
  get autojoin(): readonly string[] {
    return this.settings.autojoin;
  }

  get connected(): boolean {
    return this.state === 'ready';
  }

  /** Subscribes to an irc-framework event; the handler runs guarded. */
  protected onIrc(event: string, fn: (e: any) => void): void {
    this.client.on(event, (e: any) => this.guard(event, () => fn(e)));
  }

  protected key(channel: string): string {
    return this.client.caseLower(channel);
  }

  protected contact(nick: string): LegacyContact {
    return { id: nick, server: this.server };
  }

  protected isSelf(nick: string | undefined): boolean {
    return !!nick && this.client.caseCompare(nick, this.ownNick);
  }

  protected sameName(a: string | undefined, b: string): boolean {
    return a !== undefined && this.client.caseCompare(a, b);
  }

  protected serverText(msg: TextMessage): void {
    if (!msg.text || this.loggingOut) return;
    if (this.state === 'ready') this.safeEmit('serverMessage', this.server, msg);
    else if (this.early.length < 50) this.early.push(msg);
  }

  protected ensureReady(): void {
    if (this.state !== 'ready') throw new LegacyNetworkError(`not connected to ${this.server}`);
  }

  /** Sends lines and waits until `match` accepts (true) or refuses (an Error) a reply. */
  protected async command(lines: string[], match: Match): Promise<void> {
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

  protected timer(fn: () => void, ms: number): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.timers.delete(t);
      this.guard('timer', fn);
    }, ms);
    this.timers.add(t);
    return t;
  }

  protected clearTimer(t: NodeJS.Timeout | null): void {
    if (!t) return;
    clearTimeout(t);
    this.timers.delete(t);
  }
}
