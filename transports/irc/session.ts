/**
 * One user's connection to one IRC server, as the kit's LegacySession: connection.ts logs in and
 * keeps the connection, channels.ts the channels and their members; this file adds messages
 * (PRIVMSG, NOTICE, CTCP ACTION) both ways, split into lines that fit IRC's limit. File links in
 * what people say are re-hosted on the XMPP server's upload service when the kit's media host
 * wants them (media.links): the text gets the upload URL, also as an OOB attachment. Messages wait
 * in one queue while a copy is made, so their order stays as on IRC.
 */
import type { AdapterLogger, LegacyContact, LegacyRoom, LegacySession, MediaHost, TextMessage } from '../kit/adapter.js';
import { formatBytes } from '../../shared/format.js';
import { IrcCommands } from './commands.js';
import type { IrcSessionOptions } from './link.js';
import { IrcCommandError } from './errors.js';
import { isValidChannel, isValidNick, type IrcServerSettings } from './settings.js';
import { sanitizeOutgoing, splitMessage, stripFormatting, utf8Length } from './text.js';

export type { IrcSessionOptions } from './link.js';

/** At most this many links of one message are re-hosted. */
const MAX_LINKS_PER_MESSAGE = 3;

/** The http(s) links in a text, without trailing punctuation, each once. */
export function linksIn(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/\bhttps?:\/\/[^\s<>"]+/gi)) {
    let url = m[0];
    while (/[.,;:!?'")\]}>]$/.test(url)) {
      // A closing bracket belongs to the URL when it opened one inside it (Wikipedia style).
      if (url.endsWith(')') && (url.match(/\(/g)?.length ?? 0) >= (url.match(/\)/g)?.length ?? 0)) break;
      url = url.slice(0, -1);
    }
    if (!out.includes(url)) out.push(url);
  }
  return out;
}

export class IrcSession extends IrcCommands implements LegacySession {
  /** The XMPP server's upload service (LoginRequest.media), for file links. */
  media: MediaHost | undefined;
  private deliveries: Promise<void> = Promise.resolve();
  private deliveriesPending = 0;

  constructor(settings: IrcServerSettings, opts: IrcSessionOptions, log: AdapterLogger) {
    super(settings, opts, log);
    this.onIrc('privmsg', (e) => this.onText(e, {}));
    this.onIrc('action', (e) => this.onText(e, { action: true }));
    this.onIrc('notice', (e) => this.onText(e, { notice: true }));
    this.onIrc('invite', (e) => {
      if (!e.nick || !this.client.caseCompare(e.invited ?? '', this.ownNick)) return;
      this.safeEmit('message', this.contact(e.nick), { text: `${e.nick} invites you to ${e.channel}`, notice: true });
    });
  }

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
      const room = this.roomOf(target);
      this.deliver(msg, true, () => this.safeEmit('roomMessage', room, e.nick, msg));
      return;
    }
    const contact = this.contact(e.nick);
    this.deliver(msg, true, () => this.safeEmit('message', contact, msg));
  }

  /** Emits now, or after the messages before it and the copies of its file links. */
  private deliver(msg: TextMessage, withLinks: boolean, emit: () => void): void {
    const media = this.media;
    const links = withLinks && media?.wantsLink && media.rehostLink ? linksIn(msg.text ?? '').filter((u) => media.wantsLink!(u)).slice(0, MAX_LINKS_PER_MESSAGE) : [];
    if (this.deliveriesPending === 0 && !links.length) return emit();
    this.deliveriesPending++;
    this.deliveries = this.deliveries
      .then(async () => {
        if (links.length) await this.rehostLinks(msg, links, media!);
        if (this.state !== 'closed') emit();
      })
      .catch((err: unknown) => this.log.warn('irc message not delivered', { reason: err instanceof Error ? err.message : String(err) }))
      .finally(() => this.deliveriesPending--);
  }

  private async rehostLinks(msg: TextMessage, links: string[], media: MediaHost): Promise<void> {
    const outcomes = await Promise.all(links.map((u) => media.rehostLink!(u).catch(() => null)));
    for (const [i, url] of links.entries()) {
      const out = outcomes[i];
      if (!out) continue;
      if (out.url !== null) {
        msg.text = msg.text.split(url).join(out.url);
        msg.attachments = [...(msg.attachments ?? []), out.url];
      } else if (out.reason === 'too-large') {
        msg.text = `${msg.text}\n[${new URL(url).host}: the file is too large for the gateway to copy (at most ${formatBytes(media.maxSize)}); the link is passed on as it is]`;
      }
      // Refused or failed: the link stays as it was said (the guard's reasons are in the log).
    }
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
    const nick = this.ownNick;
    this.deliver(echo, false, () => this.safeEmit('roomMessage', this.roomOf(room.id), nick, echo));
  }
}
